package servingcert

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// MergeBundles is the caBundle the apiserver must trust: the union of every
// CA certificate in bundles, de-duplicated by DER, certificates expired at
// now pruned, in the canonical order of certs.Bundle so that every
// replica computes the same bytes from the same inputs and never flaps.
// Bundles that fail to parse are an error: a caBundle is never built from
// guesses.
func MergeBundles(now time.Time, bundles ...[]byte) ([]byte, error) {
	b, err := certs.ParseBundle(now, bundles...)
	if err != nil {
		return nil, err
	}
	if b.Len() == 0 {
		return nil, errors.New("no unexpired CA certificate in any bundle")
	}
	return b.PEM(), nil
}

// IssuingRoots returns the certificates of bundle that chain[0] (the leaf,
// followed by any intermediates) chains to: the roots the apiserver must
// keep trusting while the leaf is served, as PEM.
func IssuingRoots(chain []*x509.Certificate, bundle []byte, now time.Time) ([]byte, error) {
	leaf := chain[0]
	cas, err := certs.ParseCertsPEM(bundle)
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	var lastErr error
	for _, ca := range cas {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		opts := x509.VerifyOptions{Roots: pool, Intermediates: intermediates(chain), CurrentTime: certs.VerifyTime(leaf, now), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := leaf.Verify(opts); err == nil {
			roots = append(roots, ca)
		} else {
			lastErr = err
		}
	}
	if len(roots) == 0 {
		msg := fmt.Sprintf("certificate %q (issuer %q) chains to none of the %d CA certificates", leaf.Subject.CommonName, leaf.Issuer.CommonName, len(cas))
		if lastErr != nil {
			return nil, fmt.Errorf("%s: %w", msg, lastErr)
		}
		return nil, errors.New(msg)
	}
	return certs.EncodeCertsPEM(roots...), nil
}

// Verifies reports whether bundle (a caBundle) verifies chain (leaf first,
// then what the server sends along) for serverName at now, as the apiserver
// will when it calls the webhook.
func Verifies(bundle []byte, chain []*x509.Certificate, serverName string, now time.Time) error {
	leaf := chain[0]
	cas, err := certs.ParseCertsPEM(bundle)
	if err != nil {
		return fmt.Errorf("caBundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: intermediates(chain),
		DNSName:       serverName,
		CurrentTime:   certs.VerifyTime(leaf, now),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	return nil
}

func intermediates(chain []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range chain[1:] {
		pool.AddCert(c)
	}
	return pool
}
