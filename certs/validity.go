package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Validity defaults. FSM users rely on these values.
const (
	// RootCAValidity is the lifetime of the mesh root CA Tresor creates.
	RootCAValidity = 87600 * time.Hour
	// ProxyBootstrapCertValidity is the lifetime of a sidecar's bootstrap
	// client certificate: nothing rotates a pod's bootstrap Secret, so it
	// lasts as long as the root (FSM/OSM give it a decade too).
	ProxyBootstrapCertValidity = 87600 * time.Hour
	// WebhookServingCertValidity is the lifetime of the webhook serving certs.
	WebhookServingCertValidity = 87600 * time.Hour
	// DefaultServiceCertValidity is --service-cert-validity-duration's default
	// (MeshConfig certificate.serviceCertValidityDuration).
	DefaultServiceCertValidity = 24 * time.Hour

	// DefaultRenewFraction renews a certificate once two thirds of its
	// lifetime have passed, leaving a third to retry in.
	DefaultRenewFraction = 2.0 / 3.0
	// DefaultRenewJitter moves each certificate's renewal up to 5% of its
	// lifetime earlier, so certificates issued together are not renewed in
	// one burst.
	DefaultRenewJitter = 0.05
)

// RenewalTime is when cert should be renewed: after fraction of its lifetime
// (NotBefore to NotAfter), minus a jitter of up to jitter×lifetime. The jitter
// is derived from the certificate's signature, so it is stable for one
// certificate (repeated checks agree) and spread across certificates.
// A fraction outside (0,1] means DefaultRenewFraction; jitter is clamped to
// [0, fraction].
func RenewalTime(cert *x509.Certificate, fraction, jitter float64) time.Time {
	if !(fraction > 0 && fraction <= 1) {
		fraction = DefaultRenewFraction
	}
	if !(jitter >= 0) {
		jitter = 0
	}
	jitter = min(jitter, fraction)
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	if lifetime <= 0 {
		return cert.NotBefore
	}
	sum := sha256.Sum256(cert.Signature)
	u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53) // uniform in [0,1)
	at := fraction - jitter*u
	return cert.NotBefore.Add(time.Duration(float64(lifetime) * at))
}

// NeedsRenewal reports whether cert is due for renewal at now (see
// RenewalTime).
func NeedsRenewal(cert *x509.Certificate, now time.Time, fraction, jitter float64) bool {
	return !now.Before(RenewalTime(cert, fraction, jitter))
}

// ChainsTo reports whether the first certificate in certPEM chains to a root
// in caBundlePEM at the given instant (the rest of certPEM are intermediates).
// A serving layer uses it to notice that the CA changed under a certificate.
func ChainsTo(certPEM, caBundlePEM []byte, at time.Time) bool {
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return false
	}
	bundle, err := ParseBundle(at, caBundlePEM)
	if err != nil || bundle.Len() == 0 {
		return false
	}
	return bundle.VerifyAt(at, chain[0], chain[1:]...) == nil
}

// ValidCert is the one validity predicate for an issued certificate: the
// certificate chains to caBundlePEM, is valid at `at` (pass now plus a
// lookahead to demand that it does not expire before then), names dnsName
// (when not empty), allows every usage in usages, and keyPEM is its private
// key. The error says which check failed.
func ValidCert(caBundlePEM, certPEM, keyPEM []byte, dnsName string, usages Usage, at time.Time) error {
	bundle, err := ParseBundle(at, caBundlePEM)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	if bundle.Len() == 0 {
		return errors.New("CA bundle: no root valid at " + at.UTC().Format(time.RFC3339))
	}
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	leaf := chain[0]
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if !KeyMatches(key, leaf.PublicKey) {
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
	for _, u := range usages.ExtKeyUsages() {
		if _, err := leaf.Verify(bundle.verifyOptions(at, "", []x509.ExtKeyUsage{u}, chain[1:])); err != nil {
			return fmt.Errorf("certificate %q not valid for %s: %w", leaf.Subject.CommonName, extKeyUsageName(u), err)
		}
	}
	return nil
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server auth"
	case x509.ExtKeyUsageClientAuth:
		return "client auth"
	default:
		return fmt.Sprintf("ext key usage %d", int(u))
	}
}
