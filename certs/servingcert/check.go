package servingcert

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Reason says why a stored serving cert cannot be kept. The empty Reason
// means the cert is good.
type Reason string

// Reasons, also used as the "reason" label of the renewal metric.
const (
	ReasonNone       Reason = ""
	ReasonMissing    Reason = "missing"
	ReasonInvalid    Reason = "invalid"
	ReasonKeyPair    Reason = "key-mismatch"
	ReasonNames      Reason = "names-changed"
	ReasonUntrusted  Reason = "ca-changed"
	ReasonExpiring   Reason = "expiring"
	ReasonValidity   Reason = "validity-changed"
	ReasonRootRotate Reason = "root-rotation"
	ReasonForced     Reason = "forced"
)

// Verdict is the outcome of Check.
type Verdict struct {
	Reason Reason
	// Detail is a human sentence for logs and events.
	Detail string
	// RenewAt is when the cert becomes due (zero when it is due already).
	RenewAt time.Time
	// Final: the cert is past its renewal point but kept, because no CA of
	// the trusted bundle outlives it (certs.RenewalOutlives) and a renewal
	// would be due at once (certs.Renewal.RenewedDueAtOnce: the CA's last
	// minutes): it expires with them, at RenewAt, unless a later CA is
	// added. Detail says so.
	Final bool
}

// OK reports whether the cert can be kept.
func (v Verdict) OK() bool { return v.Reason == ReasonNone }

// Check decides whether the Secret data holds a serving cert for spec that
// the trusted CA bundle and the Secret's own ca.crt verify at now, whose key
// matches, and that is not yet due for renewal: at renewFraction of its
// lifetime minus the jitter of certs.Renewal. It never panics on malformed
// data.
func Check(spec Spec, data map[string][]byte, trusted []byte, now time.Time, renewFraction float64) Verdict {
	return check(spec, data, trusted, now, certs.Renewal{Fraction: renewFraction})
}

// CheckOverdue is Check as an observer outside the servers sees it (`certs
// status`): a cert is due only at the end of its renewal window, once every
// server should have renewed it. Each server places a cert at its own point
// of the window (certs.Renewal's per-process spread), so Check's verdict in
// another process can say "due" up to a tenth of the cert's lifetime (most
// of a year for a decade-long cert) before any server renews it.
func CheckOverdue(spec Spec, data map[string][]byte, trusted []byte, now time.Time, renewFraction float64) Verdict {
	return check(spec, data, trusted, now, certs.Renewal{Fraction: renewFraction, Spread: func(*x509.Certificate) float64 { return 0 }})
}

func check(spec Spec, data map[string][]byte, trusted []byte, now time.Time, renewal certs.Renewal) Verdict {
	certPEM, keyPEM := data[KeyCert], data[KeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 || len(data[KeyCA]) == 0 {
		return Verdict{Reason: ReasonMissing, Detail: fmt.Sprintf("Secret lacks one of %s, %s, %s", KeyCA, KeyCert, KeyKey)}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if _, perr := certs.ParseCertsPEM(certPEM); perr != nil {
			return Verdict{Reason: ReasonInvalid, Detail: fmt.Sprintf("%s does not parse: %v", KeyCert, perr)}
		}
		return Verdict{Reason: ReasonKeyPair, Detail: fmt.Sprintf("%s and %s do not form a key pair: %v", KeyCert, KeyKey, err)}
	}
	chain, err := certs.ParseCertsPEM(certPEM)
	if err != nil {
		return Verdict{Reason: ReasonInvalid, Detail: fmt.Sprintf("%s does not parse: %v", KeyCert, err)}
	}
	leaf := chain[0]
	var v Verdict
	cas, err := certs.ParseCertsPEM(data[KeyCA])
	if err != nil {
		v.Reason, v.Detail = ReasonInvalid, fmt.Sprintf("%s does not parse: %v", KeyCA, err)
		return v
	}
	// ca.crt goes into the caBundle. x509 verification accepts a leaf that
	// is itself in the roots, so a ca.crt holding tls.crt (a hand edit)
	// would pass the check below and pin a leaf in the caBundle. A cert
	// that says it is no CA is refused; one without basic constraints (an
	// old v1 root) is not, or a v1 mesh root would be renewed forever.
	for _, ca := range cas {
		if ca.Equal(leaf) || (ca.BasicConstraintsValid && !ca.IsCA) {
			v.Reason, v.Detail = ReasonInvalid, fmt.Sprintf("%s of Secret %s/%s holds %q, which is not a CA certificate",
				KeyCA, spec.Namespace, spec.SecretName, ca.Subject.CommonName)
			return v
		}
	}
	if leaf.Subject.CommonName != spec.CommonName() || !sameNames(leaf, spec) {
		v.Reason, v.Detail = ReasonNames, fmt.Sprintf("cert names (CN %q, DNS %v, IP %v) differ from the wanted CN %q, DNS %v, IP %v",
			leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, spec.CommonName(), spec.DNSNames(), spec.IPAddresses())
		return v
	}
	if !now.Before(leaf.NotAfter) {
		v.Reason, v.Detail = ReasonExpiring, fmt.Sprintf("cert expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
		return v
	}
	if err := Verifies(trusted, chain, spec.CommonName(), now); err != nil {
		v.Reason, v.Detail = ReasonUntrusted, fmt.Sprintf("the mesh CA bundle no longer verifies the cert (issuer %q): %v", leaf.Issuer.CommonName, err)
		return v
	}
	// ca.crt is what the server proves its listener with and publishes in
	// the caBundle: one that parses but does not verify tls.crt (edited,
	// or another CA's) would fail readiness for good.
	if err := Verifies(data[KeyCA], chain, spec.ServerName(), now); err != nil {
		v.Reason, v.Detail = ReasonInvalid, fmt.Sprintf("%s of Secret %s/%s does not verify its %s (issuer %q): %v",
			KeyCA, spec.Namespace, spec.SecretName, KeyCert, leaf.Issuer.CommonName, err)
		return v
	}
	// A lifetime far longer than wanted (e.g. the validity option was
	// shortened) would otherwise be kept for years. NotBefore is backdated
	// (tresor by certs.ClockSkew, Vault by its role's not_before_duration):
	// that much is not "longer", or a short validity is re-issued forever.
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > spec.validity()+spec.validity()/10+certs.ClockSkew {
		v.Reason, v.Detail = ReasonValidity, fmt.Sprintf("cert lifetime %s exceeds the configured validity %s", life, spec.validity())
		return v
	}
	v.RenewAt = renewal.At(leaf)
	if !now.Before(v.RenewAt) {
		due := fmt.Sprintf("cert is due for renewal since %s (expires %s)",
			v.RenewAt.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		// A cert cut at the end of the last CA it can chain to cannot be
		// renewed into a longer one, and in that CA's last minutes every
		// new cert (backdated certs.ClockSkew) is due at once: renewing
		// would rewrite the Secret back to back until the CA expires, on
		// every replica. There it is kept until it expires; a CA added to
		// the bundle that outlives it makes it due again. Earlier, it is
		// renewed as before (pointless, harmless, and never reported).
		if cas, err := certs.ParseCertsPEM(trusted); err == nil && !certs.RenewalOutlives(leaf, cas) && renewal.RenewedDueAtOnce(leaf, now) {
			v.Final, v.RenewAt = true, leaf.NotAfter
			v.Detail = due + ", but no CA of the mesh CA bundle outlives it: it is kept and expires with them unless a later CA is added"
			return v
		}
		v.Reason, v.Detail = ReasonExpiring, due
		v.RenewAt = time.Time{}
	}
	return v
}

// sameNames: the cert holds every wanted DNS name and exactly the wanted
// IPs. More DNS names are kept: earlier releases asked for the Service's
// short names too, and reissuing every serving cert on an upgrade would make
// old and new replicas rewrite the Secret in turn until the rollout ends.
func sameNames(leaf *x509.Certificate, spec Spec) bool {
	for _, n := range spec.DNSNames() {
		if !contains(leaf.DNSNames, n) {
			return false
		}
	}
	ips := spec.IPAddresses()
	if len(leaf.IPAddresses) != len(ips) {
		return false
	}
	for i := range ips {
		if !leaf.IPAddresses[i].Equal(ips[i]) {
			return false
		}
	}
	return true
}
