package keypool

import (
	"context"
	"crypto"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
		key, err := p.Get(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Issue(req, key, caPEM, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetSustained takes keys as fast as GOMAXPROCS callers can from
// a pool with the shipped settings (floor DefaultSize, GOMAXPROCS workers,
// scheduler gating), started empty: after the first keys the pool is dry
// and stays dry, so this is the handler's key wait under sustained load.
// It reports the p99 wait and the share of keys that came from refill
// rather than from the caller's own inline generation.
func BenchmarkGetSustained(b *testing.B) {
	for _, alg := range []certs.KeyAlgorithm{certs.RSA2048, certs.ECDSAP256} {
		b.Run(string(alg), func(b *testing.B) {
			p, err := New(Options{Algorithm: alg, Size: DefaultSize})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = p.Start(ctx) }()
			used0 := testutilValue(inlineUsed.WithLabelValues(string(alg)))
			var mu sync.Mutex
			var waits []time.Duration
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					start := time.Now()
					if _, err := p.Get(context.Background()); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				waits = append(waits, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			slices.Sort(waits)
			if len(waits) > 0 {
				b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds())/1000, "p99-ms")
			}
			inline := testutilValue(inlineUsed.WithLabelValues(string(alg))) - used0
			b.ReportMetric(100*(1-inline/float64(len(waits))), "%not-inline")
		})
	}
}

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
