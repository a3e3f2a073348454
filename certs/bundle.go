package certs

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// Bundle is a set of trusted root certificates: the union of every root a
// peer must accept, de-duplicated by DER, with expired roots pruned, in a
// stable order (oldest NotBefore first), so two replicas that merge the same
// roots produce byte-identical PEM and caBundle comparisons do not flap.
// A Bundle is immutable.
type Bundle struct {
	certs []*x509.Certificate
	pool  *x509.CertPool
}

// NewBundle builds a bundle from certs, dropping duplicates and every
// certificate already expired at now.
func NewBundle(now time.Time, certs ...*x509.Certificate) *Bundle {
	out := make([]*x509.Certificate, 0, len(certs))
	for _, c := range certs {
		if c == nil || now.After(c.NotAfter) {
			continue
		}
		if slices.ContainsFunc(out, func(o *x509.Certificate) bool { return bytes.Equal(o.Raw, c.Raw) }) {
			continue
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b *x509.Certificate) int {
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		if c := a.NotAfter.Compare(b.NotAfter); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	pool := x509.NewCertPool()
	for _, c := range out {
		pool.AddCert(c)
	}
	return &Bundle{certs: out, pool: pool}
}

// ParseBundle merges every certificate of every PEM input into one bundle.
// Inputs that are empty are skipped; an input that holds no certificate or a
// broken one is an error.
func ParseBundle(now time.Time, pems ...[]byte) (*Bundle, error) {
	var all []*x509.Certificate
	for i, p := range pems {
		if len(bytes.TrimSpace(p)) == 0 {
			continue
		}
		cs, err := ParseCertsPEM(p)
		if err != nil {
			return nil, fmt.Errorf("CA bundle %d: %w", i+1, err)
		}
		all = append(all, cs...)
	}
	return NewBundle(now, all...), nil
}

// Merge returns a new bundle holding b's and other's roots (pruned at now).
func (b *Bundle) Merge(now time.Time, other *Bundle) *Bundle {
	return NewBundle(now, append(slices.Clone(b.certs), other.certs...)...)
}

// Certificates returns the roots in bundle order. The slice is a copy.
func (b *Bundle) Certificates() []*x509.Certificate { return slices.Clone(b.certs) }

// Len is the number of roots.
func (b *Bundle) Len() int { return len(b.certs) }

// Contains reports whether c (by DER) is one of the roots.
func (b *Bundle) Contains(c *x509.Certificate) bool {
	return slices.ContainsFunc(b.certs, func(o *x509.Certificate) bool { return bytes.Equal(o.Raw, c.Raw) })
}

// Equal reports whether both bundles hold the same roots.
func (b *Bundle) Equal(other *Bundle) bool {
	return slices.EqualFunc(b.certs, other.certs, func(x, y *x509.Certificate) bool { return bytes.Equal(x.Raw, y.Raw) })
}

// PEM is the bundle as concatenated CERTIFICATE blocks (a webhook caBundle).
func (b *Bundle) PEM() []byte { return EncodeCertsPEM(b.certs...) }

// Pool returns the roots as an x509.CertPool for tls.Config.
func (b *Bundle) Pool() *x509.CertPool { return b.pool.Clone() }

// Verify checks that leaf chains to one of the roots now (through the given
// intermediates), for any extended key usage.
func (b *Bundle) Verify(leaf *x509.Certificate, intermediates ...*x509.Certificate) error {
	return b.VerifyAt(time.Now(), leaf, intermediates...)
}

// VerifyAt is Verify at a chosen instant.
func (b *Bundle) VerifyAt(at time.Time, leaf *x509.Certificate, intermediates ...*x509.Certificate) error {
	_, err := leaf.Verify(b.verifyOptions(at, "", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, intermediates))
	if err != nil {
		return fmt.Errorf("certificate %q does not chain to the CA bundle: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

func (b *Bundle) verifyOptions(at time.Time, dnsName string, usages []x509.ExtKeyUsage, intermediates []*x509.Certificate) x509.VerifyOptions {
	var inter *x509.CertPool
	if len(intermediates) > 0 {
		inter = x509.NewCertPool()
		for _, c := range intermediates {
			inter.AddCert(c)
		}
	}
	return x509.VerifyOptions{
		Roots:         b.pool,
		Intermediates: inter,
		CurrentTime:   at,
		DNSName:       dnsName,
		KeyUsages:     usages,
	}
}
