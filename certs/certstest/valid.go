package certstest

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// ValidCert is the tests' oracle for an issued certificate, written apart
// from the code it checks: the certificate chains to caBundlePEM, is valid at
// `at` (pass now plus a lookahead to demand that it does not expire before
// then), names dnsName (when not empty), allows every usage in usages, and
// keyPEM is its private key. The error says which check failed.
func ValidCert(caBundlePEM, certPEM, keyPEM []byte, dnsName string, usages certs.Usage, at time.Time) error {
	bundle, err := certs.ParseBundle(at, caBundlePEM)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	if bundle.Len() == 0 {
		return errors.New("CA bundle: no root valid at " + at.UTC().Format(time.RFC3339))
	}
	chain, err := certs.ParseCertsPEM(certPEM)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	leaf := chain[0]
	key, err := certs.ParseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if !certs.KeyMatches(key, leaf.PublicKey) {
		return fmt.Errorf("private key does not match certificate %q", leaf.Subject.CommonName)
	}
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %q is not valid at %s (valid %s to %s)", leaf.Subject.CommonName,
			at.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if dnsName != "" {
		if err := leaf.VerifyHostname(dnsName); err != nil {
			return fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
		}
	}
	if err := bundle.VerifyAt(at, leaf, chain[1:]...); err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// One Verify per usage: x509 accepts a chain valid for any one of
	// several KeyUsages, and every one is required.
	for _, u := range usages.ExtKeyUsages() {
		opts := x509.VerifyOptions{Roots: bundle.Pool(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{u}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("certificate %q not valid for %s: %w", leaf.Subject.CommonName, usageName(u), err)
		}
	}
	return nil
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server auth"
	case x509.ExtKeyUsageClientAuth:
		return "client auth"
	default:
		return fmt.Sprintf("ext key usage %d", int(u))
	}
}
