// Package certstest is the mesh CA of the tests, benchmarks and load tool:
// the production certs.Authority (real keys, real signatures) signing with
// keys from a certs/keypool set, as tresor does. Like tresor it can stage,
// activate and drop a second root; like a Vault role it can grant less than
// asked; and it can replace its root outright, count what it issued and fail
// on demand. It is not a mock of Kubernetes.
package certstest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// ProviderName is Provider()'s value.
const ProviderName = "certstest"

// Options for New. The zero value is a decade-long ECDSA root that issues
// exactly the validity asked for, keys generated on each request.
type Options struct {
	// RootValidity of every root the CA creates (zero: certs.RootCAValidity).
	RootValidity time.Duration
	// Algorithm of the roots and of the keys of requests that name none
	// (zero: ECDSA P-256, the fastest).
	Algorithm certs.KeyAlgorithm
	// Backdate of issued certificates' NotBefore (zero: a second, so a
	// certificate of a few seconds lives about what was asked; tresor
	// backdates certs.ClockSkew).
	Backdate time.Duration
	// MaxTTL caps what Issue grants as a Vault role's max_ttl does: a longer
	// request gets a shorter certificate, not an error (zero: no cap).
	MaxTTL time.Duration
	// PoolSize keys are kept ready per algorithm; New returns once the
	// default algorithm's pool is full (zero: keys generated inline).
	PoolSize int
	// RecycledKeys, when > 0, makes the pool refill instantly from that many
	// pre-generated keys of Algorithm, so a benchmark measures a pool that
	// is always warm (key generation is off the request path by design)
	// without minutes of key generation first. Never for production: keys
	// repeat.
	RecycledKeys int
}

// CA is a certs.Issuer, a certs.BundleNotifier and a rootrotation.CA. It is
// safe for concurrent use.
type CA struct {
	opts Options
	keys *keypool.Set

	mu       sync.Mutex
	active   *certs.Authority
	previous *certs.Authority // still trusted after ActivateNextRoot until DropPreviousRoot
	next     *certs.Authority // trusted, not yet signing
	since    time.Time        // of the last rotation step
	bundle   []byte           // PEM of the trusted roots, as tresor keeps it

	issued  atomic.Int64
	failing atomic.Bool
	subs    certs.Subscribers
}

var (
	_ certs.Issuer         = (*CA)(nil)
	_ certs.BundleNotifier = (*CA)(nil)
	_ rootrotation.CA      = (*CA)(nil)
)

// MustNew is New for one test: the key pool refills until t ends, and a
// failure fails t.
func MustNew(t testing.TB, opts Options) *CA {
	t.Helper()
	ca, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// New creates the CA with one root. A key pool (PoolSize > 0) is filled
// before New returns and refills until ctx is done.
func New(ctx context.Context, opts Options) (*CA, error) {
	if opts.RootValidity == 0 {
		opts.RootValidity = certs.RootCAValidity
	}
	if opts.Algorithm == "" {
		opts.Algorithm = certs.ECDSAP256
	}
	if opts.Backdate == 0 {
		opts.Backdate = time.Second
	}
	popts := keypool.Options{Algorithm: opts.Algorithm, Size: opts.PoolSize}
	if opts.RecycledKeys > 0 {
		recycled := make([]crypto.Signer, opts.RecycledKeys)
		for i := range recycled {
			k, err := certs.GenerateKey(opts.Algorithm)
			if err == nil {
				// Once here, as a pool's refill does for each new key.
				k, err = certs.WithEncodedPEM(k)
			}
			if err != nil {
				return nil, fmt.Errorf("test CA: generating recycled keys: %w", err)
			}
			recycled[i] = k
		}
		var n atomic.Uint64
		popts.Generate = func(alg certs.KeyAlgorithm) (crypto.Signer, error) {
			if alg != opts.Algorithm {
				return certs.GenerateKey(alg)
			}
			return recycled[n.Add(1)%uint64(len(recycled))], nil
		}
	}
	keys, err := keypool.NewSet(popts)
	if err != nil {
		return nil, fmt.Errorf("test CA: %w", err)
	}
	ca := &CA{opts: opts, keys: keys}
	if ca.active, err = ca.newRoot(); err != nil {
		return nil, err
	}
	ca.bundle = ca.encodeBundleLocked()
	if opts.PoolSize > 0 {
		go func() { _ = keys.Start(ctx) }()
		pool, err := keys.Pool("")
		if err != nil {
			return nil, err
		}
		if err := pool.WaitFull(ctx); err != nil {
			return nil, fmt.Errorf("test CA: filling the key pool: %w", err)
		}
	}
	return ca, nil
}

func (ca *CA) newRoot() (*certs.Authority, error) {
	a, err := certs.NewRootAuthority(ca.opts.Algorithm, ca.opts.RootValidity, time.Now())
	if err != nil {
		return nil, fmt.Errorf("test CA: %w", err)
	}
	a.Backdate = ca.opts.Backdate
	return a, nil
}

// Provider implements certs.Issuer.
func (*CA) Provider() string { return ProviderName }

// Issue implements certs.Issuer: the active root signs req, with a key of
// req.KeyAlgorithm (Options.Algorithm when empty), for at most MaxTTL.
func (ca *CA) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if ca.failing.Load() {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "issue " + req.CommonName, Err: errors.New("issuance disabled by the test")}
	}
	if ca.opts.MaxTTL > 0 {
		req.Validity = min(req.Validity, ca.opts.MaxTTL)
	}
	key, err := ca.keys.Get(ctx, req.KeyAlgorithm)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "key for " + req.CommonName, Err: err}
	}
	ca.mu.Lock()
	signer, bundle := ca.active, ca.bundleLocked()
	ca.mu.Unlock()
	c, err := signer.Issue(req, key, bundle, time.Now())
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "issue " + req.CommonName, Err: err}
	}
	ca.issued.Add(1)
	return c, nil
}

// CABundle implements certs.Issuer: every trusted root.
func (ca *CA) CABundle(context.Context) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return bytes.Clone(ca.bundle), nil
}

// bundleLocked is the PEM of every trusted root; callers must not modify it.
func (ca *CA) bundleLocked() []byte { return ca.bundle }

func (ca *CA) encodeBundleLocked() []byte {
	var roots []*x509.Certificate
	for _, a := range []*certs.Authority{ca.previous, ca.active, ca.next} {
		if a != nil {
			roots = append(roots, a.Cert)
		}
	}
	return certs.EncodeCertsPEM(roots...)
}

// OnBundleChange implements certs.BundleNotifier: f runs after every change
// of the trusted roots or the signing root, as with tresor.
func (ca *CA) OnBundleChange(f func()) (cancel func()) { return ca.subs.OnBundleChange(f) }

// Issued counts the certificates issued so far.
func (ca *CA) Issued() int64 { return ca.issued.Load() }

// FailIssuance makes Issue fail while on is true.
func (ca *CA) FailIssuance(on bool) { ca.failing.Store(on) }

// Authority is the signing root, e.g. to sign a certificate by hand.
func (ca *CA) Authority() *certs.Authority {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.active
}

// Active is the signing root's certificate.
func (ca *CA) Active() *x509.Certificate { return ca.Authority().Cert }

// Roots returns the previous, active and next roots (nil when absent).
func (ca *CA) Roots() (previous, active, next *x509.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	cert := func(a *certs.Authority) *x509.Certificate {
		if a == nil {
			return nil
		}
		return a.Cert
	}
	return cert(ca.previous), cert(ca.active), cert(ca.next)
}

// AddNextRoot is rotation phase 1: a new root is trusted, not yet signing.
// A no-op while a rotation is under way.
func (ca *CA) AddNextRoot(context.Context) error {
	r, err := ca.newRoot()
	if err != nil {
		return err
	}
	return ca.step(func() bool {
		if ca.next != nil || ca.previous != nil {
			return false
		}
		ca.next = r
		return true
	})
}

// ActivateNextRoot is rotation phase 2: the next root signs, the old one
// stays trusted.
func (ca *CA) ActivateNextRoot(context.Context) error {
	return ca.step(func() bool {
		if ca.next == nil {
			return false
		}
		ca.previous, ca.active, ca.next = ca.active, ca.next, nil
		return true
	})
}

// DropPreviousRoot is rotation phase 3: the old root is no longer trusted.
func (ca *CA) DropPreviousRoot(context.Context) error {
	return ca.step(func() bool {
		changed := ca.previous != nil
		ca.previous = nil
		return changed
	})
}

// Replace swaps in a brand-new root at once, as when the CA Secret is
// deleted and tresor creates a new one: the old root stops being trusted and
// any rotation under way is abandoned.
func (ca *CA) Replace() error {
	r, err := ca.newRoot()
	if err != nil {
		return err
	}
	return ca.step(func() bool {
		ca.active, ca.previous, ca.next = r, nil, nil
		return true
	})
}

// step applies change; when it changed anything, the phase starts now (its
// grace period counts from here) and the subscribers are told, outside the
// lock.
func (ca *CA) step(change func() bool) error {
	ca.mu.Lock()
	changed := change()
	if changed {
		ca.since = time.Now()
		ca.bundle = ca.encodeBundleLocked()
	}
	ca.mu.Unlock()
	if changed {
		ca.subs.Notify()
	}
	return nil
}

// RotationStatus implements rootrotation.CA.
func (ca *CA) RotationStatus(context.Context) (rootrotation.Status, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	st := rootrotation.Status{Since: ca.since, Current: ca.active.Cert}
	switch {
	case ca.next != nil:
		st.Phase, st.Next = rootrotation.PhaseNextRootAdded, ca.next.Cert
	case ca.previous != nil:
		st.Phase, st.Previous = rootrotation.PhaseNextRootActive, ca.previous.Cert
	}
	return st, nil
}

// ServingSecretData is the data of a serving-cert Secret for s issued by ca,
// as servingcert.Store writes it: ca.crt holds only the issuing root.
func ServingSecretData(t testing.TB, ca *CA, s servingcert.Spec) map[string][]byte {
	t.Helper()
	c, err := ca.Issue(context.Background(), s.Request())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	root, err := servingcert.IssuingRoots(leaf, c.CABundle, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{servingcert.KeyCA: root, servingcert.KeyCert: c.CertPEM, servingcert.KeyKey: c.KeyPEM}
}
