package certs

import (
	"crypto/x509"
	"fmt"
	"hash/maphash"
	"math"
	"time"
)

const (
	// RootCAValidity is the lifetime of the mesh root CA Tresor creates
	// (FSM's: a decade).
	RootCAValidity = 87600 * time.Hour

	// DefaultRenewFraction renews a certificate once two thirds of its
	// lifetime have passed, leaving a third for retries and for replicas to
	// converge.
	DefaultRenewFraction = 2.0 / 3.0
	// DefaultRenewJitter moves each renewal up to a tenth of the lifetime
	// earlier (a year of a decade-long certificate, 2.4 h of a 24 h one).
	DefaultRenewJitter = 0.1
)

// Renewal says when an issued certificate is renewed: once Fraction of its
// lifetime has passed, NotBefore to NotAfter (what the CA granted, not what
// was asked: Vault may grant less), moved earlier by a jitter of up to Jitter
// of the lifetime. The jitter keeps the replicas that watch one Secret, and
// the certificates issued together, from all renewing in the same instant.
// The zero Renewal is the default policy.
type Renewal struct {
	// Fraction of the lifetime after which a certificate is due, in (0, 1];
	// anything else means DefaultRenewFraction.
	Fraction float64
	// Jitter is the most a renewal moves earlier, as a fraction of the
	// lifetime; 0 means DefaultRenewJitter, a negative value none. It is
	// clamped to [0, Fraction/4]: a certificate is never due before three
	// quarters of the way to Fraction (half its lifetime at the default
	// 2/3), and never after Fraction, so never after it expires.
	Jitter float64
	// Spread places a certificate in the jitter window: 0 is due at
	// Fraction, 1 at Fraction-Jitter; values outside [0, 1] are clamped. It
	// must return the same value for the same certificate, so that repeated
	// checks agree. nil means processSpread; tests inject a constant.
	Spread func(*x509.Certificate) float64
}

// Window is the earliest and latest instant cert can be due under r:
// Fraction-Jitter and Fraction of its lifetime after NotBefore. A
// certificate without a positive lifetime is due at NotBefore.
func (r Renewal) Window(cert *x509.Certificate) (earliest, latest time.Time) {
	fraction, jitter := r.bounds()
	return r.point(cert, fraction-jitter), r.point(cert, fraction)
}

// At is when cert is due: Spread's place for it in the Window.
func (r Renewal) At(cert *x509.Certificate) time.Time {
	earliest, latest := r.Window(cert)
	spread := processSpread
	if r.Spread != nil {
		spread = r.Spread
	}
	u := spread(cert)
	if !(u >= 0) { // also NaN
		u = 0
	}
	return latest.Add(-time.Duration(math.Round(min(u, 1) * float64(latest.Sub(earliest)))))
}

func (r Renewal) bounds() (fraction, jitter float64) {
	fraction, jitter = r.Fraction, r.Jitter
	if !(fraction > 0 && fraction <= 1) {
		fraction = DefaultRenewFraction
	}
	if jitter == 0 || math.IsNaN(jitter) {
		jitter = DefaultRenewJitter
	}
	return fraction, max(0, min(jitter, fraction/4))
}

func (Renewal) point(cert *x509.Certificate, fraction float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if life <= 0 {
		return cert.NotBefore
	}
	// min: float rounding must not push a decade-long lifetime past NotAfter.
	return cert.NotBefore.Add(min(time.Duration(math.Round(float64(life)*fraction)), life))
}

// OutliveMargin is how much longer than a certificate a CA must live for
// renewing the certificate to be worth it: RemoteCASkew, which Vault and
// cert-manager certificates end before their CA, and ClockSkew, which a
// remote CA's clock may run behind ours.
const OutliveMargin = RemoteCASkew + ClockSkew

// RenewalOutlives reports whether a renewal of leaf could still verify more
// than OutliveMargin after leaf expires: whether a CA of trusted (the
// anchors any renewed certificate must chain to, signer or not) ends later
// than that. When none does, a renewal gets no more than leaf has: leaves
// are cut at their CA's end (Tresor at its NotAfter, Vault and cert-manager
// RemoteCASkew before), and a backdated leaf issued in the CA's last
// minutes is due at once (Renewal measures from NotBefore), so renewing it
// would rewrite it back to back until the CA expires. Every CA of trusted
// counts, the signer's own root too: a provider may sign with a new
// intermediate under it (cert-manager renews a CA Certificate in place)
// that no trusted bundle shows.
func RenewalOutlives(leaf *x509.Certificate, trusted []*x509.Certificate) bool {
	until := leaf.NotAfter.Add(OutliveMargin)
	for _, ca := range trusted {
		if ca.NotAfter.After(until) {
			return true
		}
	}
	return false
}

// RenewedDueAtOnce reports whether a renewal of leaf issued at now could be
// due at once under r: one backdated ClockSkew (the most a provider here
// backdates) and ending where leaf ends (cut at the same CA's end). That is
// a CA's last minutes (about ClockSkew·(1-f)/f left, f the earliest
// fraction): renewing there rewrites the certificate back to back. Before
// them a renewal that ends no later is pointless but harmless (each comes
// later than the last), and the certificate is renewed as usual.
func (r Renewal) RenewedDueAtOnce(leaf *x509.Certificate, now time.Time) bool {
	earliest, _ := r.Window(&x509.Certificate{NotBefore: now.Add(-ClockSkew), NotAfter: leaf.NotAfter})
	return !now.Before(earliest)
}

// spreadSeed is drawn once per process (maphash seeds are random).
var spreadSeed = maphash.MakeSeed()

// processSpread is the default Spread: a hash of the certificate under a
// per-process seed, uniform in [0, 1). One process always places a
// certificate at the same point; different certificates, and other replicas
// looking at the same certificate, land elsewhere, so the first replica due
// renews it and the others find the new certificate good.
func processSpread(cert *x509.Certificate) float64 {
	return float64(maphash.Bytes(spreadSeed, cert.Raw)>>11) / (1 << 53)
}

// ClockSkew is how far a CA's clock may run ahead of this server's: a leaf
// whose NotBefore is at most this far ahead is checked as of its NotBefore.
// cert-manager's CA issuer does not backdate NotBefore, so with its node's
// clock a second ahead every serving cert it had just issued was "not yet
// valid" here, refused, and asked for again with the same result: the
// webhook never got one. (tresor and Vault backdate their leaves.)
//
// It is also how far the roots created and the leaves signed here are
// backdated, so a peer whose clock runs behind the signer's (the apiserver
// calling a webhook, a sidecar checking a peer, another replica) does not
// reject a certificate issued a moment ago as "not yet valid": backdated a
// minute only, a serving cert signed by a replica whose node clock ran 3
// minutes ahead (a first install, a renewal, a re-issue; rotations check the
// clock first) was refused by the apiserver for 2 minutes, and every
// webhook call failed meanwhile (TestServeOnAClockAheadIsCalledAtOnce).
// Kubernetes' CSR signer backdates as much.
const ClockSkew = 5 * time.Minute

// VerifyTime is the instant at which to check leaf's chain: now, or leaf's
// NotBefore when that is ahead of now by at most ClockSkew.
func VerifyTime(leaf *x509.Certificate, now time.Time) time.Time {
	if now.Before(leaf.NotBefore) && leaf.NotBefore.Sub(now) <= ClockSkew {
		return leaf.NotBefore
	}
	return now
}

// ChainsTo reports whether the first certificate of certPEM (the rest are
// its intermediates) chains to root at the given instant (VerifyTime), for
// any key usage.
// Root rotation uses it to tell certificates of the old root from those of
// the new one.
func ChainsTo(certPEM []byte, root *x509.Certificate, at time.Time) error {
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: VerifyTime(chain[0], at), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("certificate %q does not chain to root %q (serial %s): %w",
			chain[0].Subject.CommonName, root.Subject.CommonName, root.SerialNumber.Text(16), err)
	}
	return nil
}
