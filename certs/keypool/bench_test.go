package keypool

import (
	"context"
	"crypto"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// BenchmarkIssuePodCert measures what a pod admission pays for its bootstrap
// certificate (CN <uuid>.sidecar.<sa>.<ns>.<trust-domain>, client+server, a
// decade), signed by an RSA-2048 Tresor root:
//   - empty: the pool is empty (Size 0), so the key is generated inline, as
//     FSM does on every admission;
//   - warm: the pool has a key ready. Its refill replays a few keys generated
//     up front, so refill never falls behind however fast the loop runs: the
//     figure is the request path's cost on a hit (take a key, sign, encode),
//     which is what admissions pay while the background refill keeps up.
func BenchmarkIssuePodCert(b *testing.B) {
	now := time.Now()
	ca, err := certs.NewRootAuthority(certs.RSA2048, certs.RootCAValidity, now)
	if err != nil {
		b.Fatal(err)
	}
	caPEM := certs.EncodeCertsPEM(ca.Cert)
	req := certs.Request{
		CommonName:   "0f6c1a9e-5b0e-4b8e-9d8f-1f5e2f8a7c11.sidecar.bookbuyer.bookstore.cluster.local",
		DNSNames:     []string{"0f6c1a9e-5b0e-4b8e-9d8f-1f5e2f8a7c11.sidecar.bookbuyer.bookstore.cluster.local"},
		Organization: certs.RootOrganization,
		Validity:     87600 * time.Hour, // --bootstrap-cert-validity-duration
		Usage:        certs.UsageBoth,
	}
	for _, alg := range []certs.KeyAlgorithm{certs.RSA2048, certs.ECDSAP256} {
		b.Run(string(alg), func(b *testing.B) {
			b.Run("warm", func(b *testing.B) {
				var keys []crypto.Signer
				for range 8 {
					k, err := certs.GenerateKey(alg)
					if err != nil {
						b.Fatal(err)
					}
					keys = append(keys, k)
				}
				var next atomic.Uint64
				replay := func(certs.KeyAlgorithm) (crypto.Signer, error) {
					return keys[next.Add(1)%uint64(len(keys))], nil
				}
				p, err := New(Options{Algorithm: alg, Size: DefaultSize, Generate: replay})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() { _ = p.Start(ctx) }()
				if err := p.WaitFull(ctx); err != nil {
					b.Fatal(err)
				}
				issuePodCerts(b, p, ca, caPEM, req)
			})
			b.Run("empty", func(b *testing.B) {
				p, err := New(Options{Algorithm: alg, Size: 0})
				if err != nil {
					b.Fatal(err)
				}
				issuePodCerts(b, p, ca, caPEM, req)
			})
		})
	}
}

func issuePodCerts(b *testing.B, p *Pool, ca *certs.Authority, caPEM []byte, req certs.Request) {
	b.ReportAllocs()
	for b.Loop() {
		key, err := p.Get()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Issue(req, key, caPEM, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
