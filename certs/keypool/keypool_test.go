package keypool

import (
	"context"
	"crypto"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"algorithm", Options{Algorithm: "RSA1024"}, `keypool: unknown key algorithm "RSA1024"`},
		{"size", Options{Size: -1}, "keypool: Size must not be negative, got -1"},
		{"workers", Options{Workers: -2}, "keypool: Workers must not be negative, got -2"},
		{"max bytes", Options{Size: 4, MaxBytes: -1}, "keypool: MaxBytes must not be negative, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || err.Error()[:len(tc.want)] != tc.want {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestPoolFillsAndCountsHitsAndMisses(t *testing.T) {
	const alg = certs.ECDSAP384 // a label no other test uses, so counters are ours
	p, err := New(Options{Algorithm: alg, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	hits0 := testutil.ToFloat64(hits.WithLabelValues(string(alg)))
	size0 := testutil.ToFloat64(size.WithLabelValues(string(alg))) // other pools of the process
	misses0 := testutil.ToFloat64(misses.WithLabelValues(string(alg)))

	// Not started: every Get is a miss but still returns a usable key.
	k, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := certs.AlgorithmOf(k.Public()); a != alg {
		t.Fatalf("got a %s key, want %s", a, alg)
	}
	if got := testutil.ToFloat64(misses.WithLabelValues(string(alg))) - misses0; got != 1 {
		t.Fatalf("misses = %v, want 1", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Start(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := p.WaitFull(wctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(size.WithLabelValues(string(alg))) - size0; got != 4 {
		t.Fatalf("size gauge went up by %v, want 4", got)
	}
	seen := map[string]bool{}
	for range 4 {
		k, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := certs.WithEncodedPEM(k); again != k {
			t.Fatal("a refilled key does not carry its PEM: the admission would encode it")
		}
		der, _ := certs.EncodeKeyPEM(k)
		if seen[string(der)] {
			t.Fatal("the pool handed out the same key twice")
		}
		seen[string(der)] = true
	}
	if got := testutil.ToFloat64(hits.WithLabelValues(string(alg))) - hits0; got != 4 {
		t.Fatalf("hits = %v, want 4", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(size.WithLabelValues(string(alg))) - size0; got != 0 {
		t.Fatalf("size gauge after stop = %v more than before, want none", got)
	}
}

func TestPoolRetriesGenerationErrors(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	gen := func(a certs.KeyAlgorithm) (crypto.Signer, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return nil, errors.New("entropy exhausted")
		}
		return certs.GenerateKey(a)
	}
	p, err := New(Options{Algorithm: certs.ECDSAP256, Size: 1, Generate: gen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = p.Start(ctx) }()
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRefillWakesBelowHalf: a Get that leaves the pool at half its target
// or more wakes no worker (the idle poll tops it up; waking costs the
// admission a futex call), one that leaves it below half does. The idle
// poll and the sizing window are an hour here, so only a Get's signal can
// refill the pool within the test.
func TestRefillWakesBelowHalf(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	var generated atomic.Int64
	p, err := New(Options{Algorithm: certs.ECDSAP256, Size: 8, Workers: 1, Window: time.Hour,
		Busy: func() bool { return false },
		Generate: func(certs.KeyAlgorithm) (crypto.Signer, error) {
			generated.Add(1)
			return key, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	p.idle = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = p.Start(ctx) }()
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
	take := func(n int) {
		for range n {
			if _, err := p.Get(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}

	before := generated.Load()
	take(4) // 4 of 8 left: half, no wake
	time.Sleep(200 * time.Millisecond)
	if got := generated.Load() - before; got != 0 || p.Len() != 4 {
		t.Fatalf("after taking half the pool: %d keys generated, %d pooled; want 0 and 4 (no worker woken)", got, p.Len())
	}
	take(1) // 3 left: below half, a worker refills to the target
	if err := p.WaitFull(ctx); err != nil {
		t.Fatalf("the pool was not refilled after a Get left it below half: %v (%d of 8 keys)", err, p.Len())
	}
	if got := generated.Load() - before; got != 5 {
		t.Fatalf("refill generated %d keys, want the 5 taken", got)
	}
}

func TestMissSurfacesGenerationError(t *testing.T) {
	p, err := New(Options{Algorithm: certs.ECDSAP256, Generate: func(certs.KeyAlgorithm) (crypto.Signer, error) {
		return nil, errors.New("boom")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(context.Background()); err == nil || err.Error() != "keypool: generating ECDSAP256 key: boom" {
		t.Fatalf("err = %v", err)
	}
}

func TestSetCreatesPoolsOnDemand(t *testing.T) {
	s, err := NewSet(Options{Algorithm: certs.ECDSAP256, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s.Default() != certs.ECDSAP256 {
		t.Fatalf("Default = %s", s.Default())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	late, err := s.Pool(certs.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := late.WaitFull(wctx); err != nil {
		t.Fatalf("a pool created after Start is not refilled: %v", err)
	}
	k, err := s.Get(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := certs.AlgorithmOf(k.Public()); a != certs.ECDSAP256 {
		t.Fatalf("default key = %s", a)
	}
	if _, err := s.Get(context.Background(), "RSA1024"); err == nil {
		t.Fatal("Get accepted an unknown algorithm")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// countingGenerator hands out one fixed key and counts requests per
// algorithm, so a test sees exactly which sizes the Set spends CPU on.
type countingGenerator struct {
	key crypto.Signer
	mu  sync.Mutex
	n   map[certs.KeyAlgorithm]int
}

func (g *countingGenerator) generate(alg certs.KeyAlgorithm) (crypto.Signer, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n[alg]++
	return g.key, nil
}

func (g *countingGenerator) count(alg certs.KeyAlgorithm) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n[alg]
}

func TestSetPoolsOnlyNamedSizesAndOnlyOnceAsked(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	gen := &countingGenerator{key: key, n: map[certs.KeyAlgorithm]int{}}
	s, err := NewSet(Options{Algorithm: certs.ECDSAP256, Size: 3, Generate: gen.generate})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	def, err := s.Pool("")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := def.WaitFull(wctx); err != nil {
		t.Fatal(err)
	}
	// Only the default algorithm is generated until another one is asked for.
	for _, alg := range []certs.KeyAlgorithm{certs.RSA2048, certs.RSA3072, certs.RSA4096, certs.ECDSAP384, "RSA2560"} {
		if n := gen.count(alg); n != 0 {
			t.Errorf("%d %s keys generated before any was asked for", n, alg)
		}
	}

	// A common size gets a pool on first use, filled in the background.
	if _, err := s.Get(context.Background(), certs.RSA3072); err != nil {
		t.Fatal(err)
	}
	p3072, err := s.Pool(certs.RSA3072)
	if err != nil {
		t.Fatal(err)
	}
	if err := p3072.WaitFull(wctx); err != nil {
		t.Fatal(err)
	}

	// Any other size the CRD allows is generated per request, never stocked.
	unpooled0 := testutil.ToFloat64(unpooled.WithLabelValues("RSA2049-3071"))
	for range 3 {
		if _, err := s.Get(context.Background(), "RSA2560"); err != nil {
			t.Fatal(err)
		}
	}
	if n := gen.count("RSA2560"); n != 3 {
		t.Errorf("RSA2560 generated %d times for 3 requests, want 3 (no pool)", n)
	}
	if got := testutil.ToFloat64(unpooled.WithLabelValues("RSA2049-3071")) - unpooled0; got != 3 {
		t.Errorf("unpooled counter rose by %v, want 3", got)
	}
	if _, err := s.Pool("RSA2560"); err == nil {
		t.Error("Pool(RSA2560) created a pool")
	}
	if _, err := s.Get(context.Background(), "RSA8192"); err == nil {
		t.Error("Get accepted RSA8192")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUnpooledSizeIsRealKey(t *testing.T) {
	s, err := NewSet(Options{Algorithm: certs.ECDSAP256, Size: 0})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Get(context.Background(), "RSA2560")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := certs.AlgorithmOf(k.Public()); err != nil || a != "RSA2560" {
		t.Fatalf("got a %s key (%v), want RSA2560", a, err)
	}
}

// TestUnpooledSeriesAreBounded: asking for every RSA size MeshConfig allows
// leaves fsm_webhooks_keypool_unpooled_total with one series per range
// between pooled sizes, not one per size (2045 before).
func TestUnpooledSeriesAreBounded(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	gen := &countingGenerator{key: key, n: map[certs.KeyAlgorithm]int{}}
	s, err := NewSet(Options{Algorithm: certs.ECDSAP256, Size: 0, Generate: gen.generate})
	if err != nil {
		t.Fatal(err)
	}
	ranges := []string{"RSA2049-3071", "RSA3073-4095"}
	before := map[string]float64{}
	for _, r := range ranges {
		before[r] = testutil.ToFloat64(unpooled.WithLabelValues(r))
	}
	asked := 0
	for bits := certs.MinRSAKeyBits; bits <= certs.MaxRSAKeyBits; bits++ {
		alg, err := certs.RSAKeyAlgorithm(bits)
		if err != nil {
			t.Fatal(err)
		}
		if Pooled(alg) {
			continue
		}
		if _, err := s.Get(context.Background(), alg); err != nil {
			t.Fatal(err)
		}
		asked++
	}
	if n := testutil.CollectAndCount(unpooled); n > len(ranges)+1 {
		t.Errorf("fsm_webhooks_keypool_unpooled_total has %d series after %d sizes, want at most %d (%v and other)", n, asked, len(ranges)+1, ranges)
	}
	for _, r := range ranges {
		if got := testutil.ToFloat64(unpooled.WithLabelValues(r)) - before[r]; got != 1023 {
			t.Errorf("unpooled{algorithm=%q} rose by %v, want 1023 (every size in the range)", r, got)
		}
	}
}

func TestUnpooledLabel(t *testing.T) {
	for _, tc := range []struct {
		alg  certs.KeyAlgorithm
		want string
	}{
		{"RSA2049", "RSA2049-3071"},
		{"RSA2560", "RSA2049-3071"},
		{"RSA3071", "RSA2049-3071"},
		{"RSA3073", "RSA3073-4095"},
		{"RSA4095", "RSA3073-4095"},
		{certs.RSA3072, "other"}, // pooled: never counted, but bounded all the same
		{certs.ECDSAP256, "other"},
		{"RSA8192", "other"},
	} {
		if got := UnpooledLabel(tc.alg); got != tc.want {
			t.Errorf("UnpooledLabel(%s) = %q, want %q", tc.alg, got, tc.want)
		}
	}
}
