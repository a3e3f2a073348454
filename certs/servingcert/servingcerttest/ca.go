// Package servingcerttest provides an in-memory mesh CA for tests of the
// serving-cert lifecycle: a real CA (real keys, real signatures) that can
// stage, activate and drop a second root like the tresor provider, and
// count what it issued. It is not a mock of Kubernetes.
package servingcerttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

// CA is a certs.Issuer with root rotation primitives.
type CA struct {
	mu       sync.Mutex
	active   *root
	previous *root // still trusted after ActivateNextRoot until DropPreviousRoot
	next     *root // trusted, not yet signing
	validity time.Duration
	since    time.Time
	issued   atomic.Int64
	failing  atomic.Bool
	subs     certs.Subscribers
	// maxTTL and backdate make Issue behave like a Vault role (see Limit).
	maxTTL, backdate time.Duration
}

var _ certs.BundleNotifier = (*CA)(nil)

// OnBundleChange runs f after every change of the trusted roots or the
// signing root, as tresor does.
func (ca *CA) OnBundleChange(f func()) (cancel func()) { return ca.subs.OnBundleChange(f) }

// changed tells the subscribers; ca.mu must not be held.
func (ca *CA) changed() { ca.subs.Notify() }

type root struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// New returns a CA with one root valid for rootValidity.
func New(rootValidity time.Duration) (*CA, error) {
	r, err := newRoot(rootValidity)
	if err != nil {
		return nil, err
	}
	return &CA{active: r, validity: rootValidity}, nil
}

func newRoot(validity time.Duration) (*root, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("test CA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("test CA serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fsm-ca.flomesh.io", Organization: []string{"Flomesh Service Mesh"}, SerialNumber: serial.Text(16)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("test CA cert: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("test CA cert: %w", err)
	}
	return &root{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Provider implements certs.Issuer.
func (*CA) Provider() string { return "test" }

// Issued counts certificates issued so far.
func (ca *CA) Issued() int64 { return ca.issued.Load() }

// FailIssuance makes Issue fail while on is true.
func (ca *CA) FailIssuance(on bool) { ca.failing.Store(on) }

// CABundle implements certs.Issuer: every trusted root.
func (ca *CA) CABundle(context.Context) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.bundleLocked(), nil
}

func (ca *CA) bundleLocked() []byte {
	var out []byte
	for _, r := range []*root{ca.previous, ca.active, ca.next} {
		if r != nil {
			out = append(out, r.pem...)
		}
	}
	return out
}

// Active returns the signing root.
func (ca *CA) Active() *x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.active.cert
}

// Limit makes the CA grant at most maxTTL (zero: no limit) and backdate
// NotBefore by backdate, as a Vault role with max_ttl and
// not_before_duration does: a request above the limit gets a shorter
// certificate, not an error. Call it before issuing.
func (ca *CA) Limit(maxTTL, backdate time.Duration) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.maxTTL, ca.backdate = maxTTL, backdate
}

// Issue implements certs.Issuer.
func (ca *CA) Issue(_ context.Context, req certs.Request) (*certs.Certificate, error) {
	if ca.failing.Load() {
		return nil, &certs.ProviderError{Provider: "test", Op: "issue", Err: errors.New("issuance disabled by the test")}
	}
	ca.mu.Lock()
	signer, bundle, maxTTL, backdate := ca.active, ca.bundleLocked(), ca.maxTTL, ca.backdate
	ca.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	validity := req.Validity
	if maxTTL > 0 {
		validity = min(validity, maxTTL)
	}
	notAfter := now.Add(validity)
	if notAfter.After(signer.cert.NotAfter) {
		notAfter = signer.cert.NotAfter
	}
	if backdate == 0 {
		backdate = time.Second
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: []string{req.Organization}},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPAddresses,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  req.Usage.ExtKeyUsages(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, &key.PublicKey, signer.key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	ca.issued.Add(1)
	return &certs.Certificate{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		CABundle: bundle,
		NotAfter: notAfter,
	}, nil
}

// AddNextRoot creates a new root that is trusted but does not sign yet.
func (ca *CA) AddNextRoot(context.Context) error {
	r, err := newRoot(ca.validity)
	if err != nil {
		return err
	}
	defer ca.changed()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.next == nil && ca.previous == nil {
		ca.next, ca.since = r, time.Now()
	}
	return nil
}

// ActivateNextRoot makes the next root sign; the old one stays trusted.
func (ca *CA) ActivateNextRoot(context.Context) error {
	defer ca.changed()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.next != nil {
		ca.previous, ca.active, ca.next, ca.since = ca.active, ca.next, nil, time.Now()
	}
	return nil
}

// DropPreviousRoot stops trusting the old root.
func (ca *CA) DropPreviousRoot(context.Context) error {
	defer ca.changed()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.previous != nil {
		ca.previous, ca.since = nil, time.Now()
	}
	return nil
}

// Replace swaps in a brand-new root at once, as when the CA Secret is deleted
// and the provider creates a new one: the old root stops being trusted.
func (ca *CA) Replace() error {
	r, err := newRoot(ca.validity)
	if err != nil {
		return err
	}
	defer ca.changed()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.active, ca.previous, ca.next = r, nil, nil
	return nil
}

// Roots returns the previous, active and next roots (nil when absent).
func (ca *CA) Roots() (previous, active, next *x509.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	get := func(r *root) *x509.Certificate {
		if r == nil {
			return nil
		}
		return r.cert
	}
	return get(ca.previous), get(ca.active), get(ca.next)
}

// RotationStatus implements rootrotation.CA.
func (ca *CA) RotationStatus(context.Context) (rootrotation.Status, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	st := rootrotation.Status{Since: ca.since, Current: ca.active.cert}
	switch {
	case ca.next != nil:
		st.Phase, st.Next = rootrotation.PhaseNextRootAdded, ca.next.cert
	case ca.previous != nil:
		st.Phase, st.Previous = rootrotation.PhaseNextRootActive, ca.previous.cert
	}
	return st, nil
}
