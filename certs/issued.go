package certs

import (
	"context"
	"crypto"
	"errors"
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
	if err != nil {
		return nil, &ProviderError{Provider: provider, Op: "issue " + req.CommonName, Err: err}
	}
	return c, nil
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
