// Package certs holds everything about keys, certificate authorities and issued
// certificates: the provider-neutral Issuer contract, PEM helpers, trust
// bundles and when a certificate is due for renewal. Providers live in
// sub-packages (tresor, vault, certmanager); nothing here knows about webhooks.
package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Usage says what an issued certificate may be used for.
type Usage int

const (
	// UsageServer is a TLS server certificate (ExtKeyUsageServerAuth).
	UsageServer Usage = 1 << iota
	// UsageClient is a TLS client certificate (ExtKeyUsageClientAuth).
	UsageClient
	// UsageBoth is server and client auth, as Pipy sidecars need.
	UsageBoth = UsageServer | UsageClient
)

// ExtKeyUsages returns the x509 extended key usages for u.
func (u Usage) ExtKeyUsages() []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	if u&UsageServer != 0 {
		out = append(out, x509.ExtKeyUsageServerAuth)
	}
	if u&UsageClient != 0 {
		out = append(out, x509.ExtKeyUsageClientAuth)
	}
	return out
}

func (u Usage) String() string {
	switch u {
	case UsageServer:
		return "server"
	case UsageClient:
		return "client"
	case UsageBoth:
		return "server+client"
	default:
		return fmt.Sprintf("Usage(%d)", int(u))
	}
}

// Request describes a certificate to issue.
type Request struct {
	CommonName   string
	DNSNames     []string
	IPAddresses  []net.IP
	Organization string
	Validity     time.Duration
	Usage        Usage
	// KeyAlgorithm of the new private key; empty means the provider's default.
	// Vault ignores it: the Vault role decides the key type.
	KeyAlgorithm KeyAlgorithm
}

// Validate checks the request before any provider spends work on it.
func (r Request) Validate() error {
	if r.CommonName == "" && len(r.DNSNames) == 0 && len(r.IPAddresses) == 0 {
		return errors.New("request: CommonName, DNSNames and IPAddresses are all empty")
	}
	if r.Validity <= 0 {
		return fmt.Errorf("request for %q: Validity must be positive, got %s", r.CommonName, r.Validity)
	}
	if r.Usage&UsageBoth == 0 || r.Usage&^UsageBoth != 0 {
		return fmt.Errorf("request for %q: Usage must be server, client or both, got %s", r.CommonName, r.Usage)
	}
	for i, n := range r.DNSNames {
		if n == "" {
			return fmt.Errorf("request for %q: DNSNames[%d] is empty", r.CommonName, i)
		}
	}
	if err := r.KeyAlgorithm.Validate(); err != nil {
		return fmt.Errorf("request for %q: KeyAlgorithm: %w", r.CommonName, err)
	}
	return nil
}

// Certificate is an issued certificate with its private key and the bundle of
// CAs a peer must trust to verify it.
type Certificate struct {
	CertPEM  []byte // leaf (and intermediates, if any)
	KeyPEM   []byte // PKCS#8 or PKCS#1 private key
	CABundle []byte // PEM of every root currently trusted by the mesh
	NotAfter time.Time
}

// Issuer issues certificates from the mesh CA. Implementations are safe for
// concurrent use.
type Issuer interface {
	// Issue signs a new certificate for req.
	Issue(ctx context.Context, req Request) (*Certificate, error)
	// CABundle returns the PEM bundle of every root currently trusted (during
	// a root rotation: old and new).
	CABundle(ctx context.Context) ([]byte, error)
	// Provider names the provider ("tresor", "vault", "cert-manager") for
	// errors and logs.
	Provider() string
}

// BundleNotifier is implemented by issuers that learn when their trusted
// bundle or signing root changes (tresor watches fsm-ca-bundle, so a
// rotation step taken by another process is seen at once). Consumers react
// on the call instead of at their next periodic re-read; f must not block.
type BundleNotifier interface {
	OnBundleChange(f func()) (cancel func())
}

// ProviderError is returned by every provider so callers and users see which
// provider failed and why.
type ProviderError struct {
	Provider string
	Op       string
	Err      error
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Provider, e.Op, e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }
