package webhooks

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// TLSPolicy is what the webhook listeners accept of a client's TLS: the
// lowest version, and the cipher suites of TLS 1.2. Go does not let TLS 1.3's
// suites be configured (all of them are AEAD), so with MinVersion TLS 1.3
// CipherSuites must be empty. The zero value is the default policy.
type TLSPolicy struct {
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; 0 means TLS 1.2.
	MinVersion uint16
	// CipherSuites are the TLS 1.2 suites offered; empty means
	// DefaultCipherSuites.
	CipherSuites []uint16
}

// DefaultCipherSuites are the TLS 1.2 suites the listeners accept unless
// told otherwise: forward-secret AEAD ones only (what the apiserver's Go
// client offers first).
func DefaultCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// tlsVersions are the accepted --tls-min-version names, as kube-apiserver's
// flag of that name spells them.
var tlsVersions = map[string]uint16{"VersionTLS12": tls.VersionTLS12, "VersionTLS13": tls.VersionTLS13}

// ParseTLSVersion returns the version a --tls-min-version name stands for.
func ParseTLSVersion(name string) (uint16, error) {
	if v, ok := tlsVersions[name]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("must be VersionTLS12 or VersionTLS13")
}

// ParseCipherSuites returns the suites named as crypto/tls and IANA name
// them, or by the legacy ChaCha20 names kube-apiserver's
// --tls-cipher-suites also takes. Only TLS 1.2 suites crypto/tls counts as
// secure are accepted: an insecure one (RC4, 3DES, RSA key exchange, CBC
// with SHA-256) is refused rather than silently weakening every webhook,
// and a TLS 1.3 suite cannot be chosen.
func ParseCipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, name := range names {
		id, err := cipherSuite(name)
		if err != nil {
			return nil, err
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("%s is listed twice", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// legacySuiteNames are the names kube-apiserver's --tls-cipher-suites also
// takes for the ChaCha20 suites (crypto/tls's constants of those names
// too): the CIS Kubernetes Benchmark's list spells them so.
var legacySuiteNames = map[string]uint16{
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
}

func cipherSuite(name string) (uint16, error) {
	if id, ok := legacySuiteNames[name]; ok {
		return id, nil
	}
	for _, s := range tls.CipherSuites() {
		if s.Name != name {
			continue
		}
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			return 0, fmt.Errorf("%s is a TLS 1.3 suite, which Go always enables and does not let be chosen; name TLS 1.2 suites only", name)
		}
		return s.ID, nil
	}
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return 0, fmt.Errorf("%s is insecure (crypto/tls lists it as such); use any of %s", name, strings.Join(SecureCipherSuiteNames(), ", "))
		}
	}
	return 0, fmt.Errorf("%s is not a TLS cipher suite; use any of %s", name, strings.Join(SecureCipherSuiteNames(), ", "))
}

// SecureCipherSuiteNames are the TLS 1.2 suites ParseCipherSuites accepts.
func SecureCipherSuiteNames() []string {
	var names []string
	for _, s := range tls.CipherSuites() {
		if slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			names = append(names, s.Name)
		}
	}
	return names
}

func (p TLSPolicy) validate() error {
	switch p.MinVersion {
	case 0, tls.VersionTLS12:
	case tls.VersionTLS13:
		if len(p.CipherSuites) > 0 {
			return fmt.Errorf("webhooks: TLSPolicy: cipher suites configure TLS 1.2, and MinVersion is TLS 1.3")
		}
	default:
		return fmt.Errorf("webhooks: TLSPolicy: MinVersion %#04x is neither TLS 1.2 nor TLS 1.3", p.MinVersion)
	}
	return nil
}

// apply sets the policy and the certificate source on a listener's config.
func (p TLSPolicy) apply(c *tls.Config, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	c.GetCertificate = getCert
	c.MinVersion = max(p.MinVersion, tls.VersionTLS12)
	c.CipherSuites = p.CipherSuites
	if len(c.CipherSuites) == 0 {
		c.CipherSuites = DefaultCipherSuites()
	}
}
