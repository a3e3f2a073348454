package keypool

import (
	"context"
	"crypto"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestTrimKeepsTheTarget: trimming to a decayed target drops the keys above
// it and no more, and never drops below what the pool holds.
func TestTrimKeepsTheTarget(t *testing.T) {
	gen := newFakeKeys(t)
	for _, tc := range []struct {
		name       string
		held, trim int
		want       int
	}{
		{"above the target", 10, 4, 4},
		{"one above", 5, 4, 4},
		{"at the target", 4, 4, 4},
		{"below the target", 3, 4, 3},
		{"to nothing", 6, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Options{Algorithm: certs.ECDSAP256, Size: 16, Generate: gen.generate})
			if err != nil {
				t.Fatal(err)
			}
			for range tc.held {
				if !p.put(gen.key) {
					t.Fatal("put refused below the cap")
				}
			}
			p.trim(tc.trim)
			if got := p.Len(); got != tc.want {
				t.Fatalf("%d keys trimmed to %d: %d left, want %d", tc.held, tc.trim, got, tc.want)
			}
		})
	}
}

// TestMissWithEndedContextGeneratesNothing: a Get on an empty pool whose
// caller has already given up returns the context's error without starting
// a key generation (no CPU spent on a request nobody waits for) or counting
// a miss (a generation started).
func TestMissWithEndedContextGeneratesNothing(t *testing.T) {
	const alg = certs.RSA3072 // no Get of another test runs meanwhile: the counter is ours
	gen := newFakeKeys(t)
	p, err := New(Options{Algorithm: alg, Size: 2, Generate: gen.generate})
	if err != nil {
		t.Fatal(err)
	}
	misses0 := testutil.ToFloat64(misses.WithLabelValues(string(alg)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k, err := p.Get(ctx)
	if k != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with an ended context = %v, %v; want no key and context.Canceled", k, err)
	}
	if got := testutil.ToFloat64(misses.WithLabelValues(string(alg))) - misses0; got != 0 {
		t.Fatalf("misses rose by %v: an inline generation started for a caller that had given up", got)
	}
	if n := gen.calls.Load(); n != 0 {
		t.Fatalf("%d keys generated for a caller that had given up", n)
	}
}

// TestSetPoolsAnUnpooledDefault: a Set's default algorithm is pooled even
// when it is an unnamed RSA size (Options allow it; the flags offer named
// ones only): Get serves it from stock and does not count it as unpooled.
func TestSetPoolsAnUnpooledDefault(t *testing.T) {
	const alg = certs.KeyAlgorithm("RSA2560")
	gen := newFakeKeys(t)
	s, err := NewSet(Options{Algorithm: alg, Size: 2, Generate: gen.generate, Busy: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Pool("")
	if err != nil {
		t.Fatal(err)
	}
	if q, err := s.Pool(alg); err != nil || q != p {
		t.Fatalf("Pool(%s) = %p, %v; want the default pool %p", alg, q, err, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
	hits0 := testutil.ToFloat64(hits.WithLabelValues(string(alg)))
	unpooled0 := testutil.ToFloat64(unpooled.WithLabelValues(UnpooledLabel(alg)))
	for _, asked := range []certs.KeyAlgorithm{"", alg} {
		if _, err := s.Get(context.Background(), asked); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(hits.WithLabelValues(string(alg))) - hits0; got != 2 {
		t.Errorf("pool hits rose by %v, want 2 (both Gets served from stock)", got)
	}
	if got := testutil.ToFloat64(unpooled.WithLabelValues(UnpooledLabel(alg))) - unpooled0; got != 0 {
		t.Errorf("unpooled counter rose by %v for the default algorithm, want 0", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAbandonedFailedGenerationLeavesNoKey: when a caller gives up on a miss
// and its inline generation then fails, nothing lands in the pool: the next
// Get must not be handed a nil key.
func TestAbandonedFailedGenerationLeavesNoKey(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 2)
	fail, block := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(block) })
	var calls atomic.Int64
	p, err := New(Options{Algorithm: certs.ECDSAP256, Size: 2, Generate: func(certs.KeyAlgorithm) (crypto.Signer, error) {
		started <- struct{}{}
		if calls.Add(1) == 1 {
			<-fail
			return nil, errors.New("entropy exhausted")
		}
		<-block // the second caller's own generation never ends in time
		return key, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := p.Get(ctx); first <- err }()
	<-started
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Get: err = %v, want context.Canceled", err)
	}
	close(fail) // the abandoned generation fails now

	// A key put in the pool (a nil one) would be taken by this Get while its
	// own generation is blocked; without one it ends at its deadline.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	k, err := p.Get(ctx2)
	if k != nil || err == nil {
		t.Fatalf("Get after a failed abandoned generation = %v, %v; want no key and the deadline's error", k, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if p.Len() != 0 {
		t.Fatalf("pool holds %d keys after a failed generation, want 0", p.Len())
	}
}
