package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// IssueRemote is the Issue of a provider that asks another system for the
// certificate (Vault, cert-manager): req is validated before any round trip,
// and every failure is a ProviderError naming the provider and the
// certificate's common name.
func IssueRemote(ctx context.Context, provider string, req Request, issue func(context.Context, Request) (*Certificate, error)) (*Certificate, error) {
	err := req.Validate()
	var c *Certificate
	if err == nil {
		c, err = issue(ctx, req)
	}
	if err == nil {
		err = namesAsked(c.CertPEM, req)
	}
	if err != nil {
		return nil, &ProviderError{Provider: provider, Op: "issue " + req.CommonName, Err: err}
	}
	return c, nil
}

// namesAsked checks that the leaf of certPEM carries the names req asked
// for: its common name and every DNS name and IP address (more are
// allowed: Vault adds the common name to the DNS names). A remote CA
// signs what it is asked or refuses; one that rewrites the subject (an
// external cert-manager issuer's template or policy) would otherwise give a
// sidecar another identity than its pod's, or a webhook a certificate the
// apiserver refuses, and the refusal here names what came back.
func namesAsked(certPEM []byte, req Request) error {
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return err
	}
	leaf := chain[0]
	if req.CommonName != "" && !strings.EqualFold(leaf.Subject.CommonName, req.CommonName) {
		return fmt.Errorf("the CA returned a certificate for common name %q, not the %q asked for", leaf.Subject.CommonName, req.CommonName)
	}
	for _, n := range req.DNSNames {
		if !slices.ContainsFunc(leaf.DNSNames, func(d string) bool { return strings.EqualFold(d, n) }) {
			return fmt.Errorf("the CA returned a certificate for %q without the DNS name %q asked for (it has %v)", leaf.Subject.CommonName, n, leaf.DNSNames)
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return fmt.Errorf("the CA returned a certificate for %q without the IP address %s asked for (it has %v)", leaf.Subject.CommonName, ip, leaf.IPAddresses)
		}
	}
	return nil
}

// errKeyMismatch is IssuedCertificate's error for a leaf of another key.
var errKeyMismatch = errors.New("the leaf certificate is not for the private key")

// IssuedCertificate checks what a remote CA returned and packages it: certPEM
// must hold at least one certificate and its first (the leaf) must be for key;
// the key is re-encoded as PKCS#8. CABundle is left to the caller, which
// knows where its provider's roots come from. Errors name no field: the
// caller prefixes the field its API calls it.
func IssuedCertificate(certPEM []byte, key crypto.Signer) (*Certificate, error) {
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !KeyMatches(key, chain[0].PublicKey) {
		return nil, errKeyMismatch
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &Certificate{CertPEM: certPEM, KeyPEM: keyPEM, NotAfter: chain[0].NotAfter}, nil
}

// RemoteCASkew is how long before its CA's end a certificate cut by
// CappedValidity ends: a remote CA computes notAfter from its own clock,
// read a request's latency after ours (and perhaps a little ahead), and may
// refuse a leaf that would outlive it by even a nanosecond (Vault does).
const RemoteCASkew = time.Minute

// CappedValidity is the validity to ask a remote CA for at now so that the
// certificate ends no later than RemoteCASkew before caNotAfter: requested
// when that leaves room for it, else the room in whole seconds (Vault's TTL
// resolution). When the CA ends within RemoteCASkew (+1s) of now nothing
// fits and requested is returned unchanged: the CA's own answer (a refusal,
// a signature by another CA) then beats guessing locally.
func CappedValidity(requested time.Duration, now, caNotAfter time.Time) time.Duration {
	room := (caNotAfter.Sub(now) - RemoteCASkew).Truncate(time.Second)
	if room >= requested || room < time.Second {
		return requested
	}
	return room
}

// EarliestCap is the shortest CappedValidity over cas, for a certificate
// whose signing CA is unknown but is one of them.
func EarliestCap(requested time.Duration, now time.Time, cas []*x509.Certificate) time.Duration {
	v := requested
	for _, c := range cas {
		v = min(v, CappedValidity(requested, now, c.NotAfter))
	}
	return v
}

// SignerOf is the certificate among candidates that signed leaf, or nil:
// its subject is the leaf's issuer and, when several share that subject (a
// next root is often named like the one it replaces), its key verifies the
// leaf's signature.
func SignerOf(leaf *x509.Certificate, candidates ...*x509.Certificate) *x509.Certificate {
	var named []*x509.Certificate
	for _, c := range candidates {
		if bytes.Equal(c.RawSubject, leaf.RawIssuer) {
			named = append(named, c)
		}
	}
	if len(named) == 1 {
		return named[0]
	}
	for _, c := range named {
		if leaf.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}
