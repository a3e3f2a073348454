// Package injectortest provides a real, in-memory mesh CA implementing
// certs.Issuer for the injector's tests, benchmarks and load tool: a root
// from certs.NewRootAuthority signing with keys from a certs/keypool pool.
package injectortest

import (
	"context"
	"crypto"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
)

// Issuer is a local CA. It is safe for concurrent use.
type Issuer struct {
	ca     *certs.Authority
	bundle []byte
	pool   *keypool.Pool
}

var _ certs.Issuer = (*Issuer)(nil)

// Options for NewIssuer.
type Options struct {
	Algorithm certs.KeyAlgorithm
	// PoolSize keys are kept ready (0: generate inline).
	PoolSize int
	// RecycledKeys, when > 0, makes the pool refill instantly from that many
	// pre-generated keys, so a benchmark measures a pool that is always warm
	// (key generation is off the request path by design) without minutes of
	// key generation first. Never for production: keys repeat.
	RecycledKeys int
}

// NewIssuer creates a root CA and a started key pool; the pool stops with ctx.
func NewIssuer(ctx context.Context, opts Options) (*Issuer, error) {
	alg := opts.Algorithm.OrDefault()
	ca, err := certs.NewRootAuthority(alg, 87600*time.Hour, time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating test root CA: %w", err)
	}
	popts := keypool.Options{Algorithm: alg, Size: opts.PoolSize}
	if opts.RecycledKeys > 0 {
		keys := make([]crypto.Signer, opts.RecycledKeys)
		for i := range keys {
			if keys[i], err = certs.GenerateKey(alg); err != nil {
				return nil, err
			}
		}
		var next atomic.Uint64
		popts.Generate = func(certs.KeyAlgorithm) (crypto.Signer, error) {
			return keys[next.Add(1)%uint64(len(keys))], nil
		}
	}
	pool, err := keypool.New(popts)
	if err != nil {
		return nil, err
	}
	if opts.PoolSize > 0 {
		go func() { _ = pool.Start(ctx) }()
		if err := pool.WaitFull(ctx); err != nil {
			return nil, fmt.Errorf("filling key pool: %w", err)
		}
	}
	return &Issuer{ca: ca, bundle: certs.EncodeCertsPEM(ca.Cert), pool: pool}, nil
}

// Issue implements certs.Issuer.
func (i *Issuer) Issue(_ context.Context, req certs.Request) (*certs.Certificate, error) {
	key, err := i.pool.Get()
	if err != nil {
		return nil, &certs.ProviderError{Provider: i.Provider(), Op: "key", Err: err}
	}
	c, err := i.ca.Issue(req, key, i.bundle, time.Now())
	if err != nil {
		return nil, &certs.ProviderError{Provider: i.Provider(), Op: "issue", Err: err}
	}
	return c, nil
}

// CABundle implements certs.Issuer.
func (i *Issuer) CABundle(context.Context) ([]byte, error) { return i.bundle, nil }

// Provider implements certs.Issuer.
func (i *Issuer) Provider() string { return "injectortest" }

// Authority is the CA, e.g. to sign a webhook serving certificate.
func (i *Issuer) Authority() *certs.Authority { return i.ca }
