package keypool

import (
	"context"
	"crypto"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestStockShrinksBackWhenIdle: after a burst the stock, not only the
// target, decays back towards the floor: the keys of the largest burst are
// not held for the life of the process.
func TestStockShrinksBackWhenIdle(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	const floor = 4
	p, err := New(Options{Algorithm: certs.ECDSAP256, Size: floor, MaxBytes: 1000 * KeyBytes(certs.ECDSAP256),
		Window: 20 * time.Millisecond, Busy: func() bool { return false },
		Generate: func(certs.KeyAlgorithm) (crypto.Signer, error) { return key, nil }})
	if err != nil {
		t.Fatal(err)
	}
	targets := recordTargets(p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	// A burst of 30 in one window (target 60), taken before the pool
	// starts so that its first window holds all of them.
	for range 30 {
		if _, err := p.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Start(ctx) }()
	defer func() { cancel(); <-done }()
	// That window's target lasts 20 ms: taken from the pool's own record,
	// not polled for.
	if got := nextTarget(t, targets, deadline); got != 60 {
		t.Fatalf("target after a burst of 30 = %d, want 60", got)
	}
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
	peak := p.Len()
	t.Logf("after the burst: target %d, stock %d", p.Target(), peak)

	// Idle: the target decays back to the floor within a few dozen
	// windows, the stock trimmed to it as it is decided.
	for got := 60; got > floor; {
		got = nextTarget(t, targets, deadline)
	}
	time.Sleep(20 * 20 * time.Millisecond) // twenty more idle windows
	if got := p.Len(); got > 2*floor {
		t.Fatalf("idle for many windows: target back to %d but the pool still holds %d keys (peak %d): the stock never shrinks, "+
			"so the memory of the largest burst is held for the life of the process", p.Target(), got, peak)
	}
}

// TestGetHonoursContext: a miss whose caller gives up returns the context's
// error at once, and the key generated for it lands in the pool for the
// next caller instead of being lost.
func TestGetHonoursContext(t *testing.T) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	p, err := New(Options{Algorithm: certs.ECDSAP256, Size: 2, Busy: func() bool { return false },
		Generate: func(certs.KeyAlgorithm) (crypto.Signer, error) { <-gate; return key, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	k, err := p.Get(ctx) // empty, not started: the inline generation waits on gate
	if !errors.Is(err, context.DeadlineExceeded) || k != nil {
		t.Fatalf("Get past its deadline = %v, %v; want no key and context.DeadlineExceeded", k, err)
	}
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for p.Len() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Len() != 1 {
		t.Fatalf("pool holds %d keys after the abandoned generation ended; want its key kept (1)", p.Len())
	}
	if _, err := p.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestFullPoolStaysWithinMaxBytes: Options.MaxBytes caps the stock in
// estimated key memory (KeyBytes), which must count the PKCS#8 PEM the pool
// stores with each refilled key (certs.WithEncodedPEM): without it a full
// RSA pool held ~40% more heap than MaxBytes.
func TestFullPoolStaysWithinMaxBytes(t *testing.T) {
	const alg = certs.RSA2048
	const n = 24
	maxBytes := n * KeyBytes(alg)
	p, err := New(Options{Algorithm: alg, Size: n, MaxBytes: maxBytes, Busy: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Cap() != n {
		t.Fatalf("Cap %d, want %d", p.Cap(), n)
	}
	// Warm up what one key costs once (tables, PEM buffers), outside the measure.
	if k, err := certs.GenerateKey(alg); err == nil {
		_, _ = certs.WithEncodedPEM(k)
	}
	before := liveHeap()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Start(ctx) }()
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let workers park
	used := liveHeap() - before
	t.Logf("full pool of %d %s keys retains %d B (%d B/key); MaxBytes %d (KeyBytes %d)", p.Len(), alg, used, used/int64(p.Len()), maxBytes, KeyBytes(alg))
	if limit := int64(maxBytes) * 115 / 100; used > limit {
		t.Errorf("a full pool retains %d B, over its MaxBytes cap %d by %d%%: KeyBytes(%s)=%d does not count the PEM the pool stores with each key",
			used, maxBytes, (used-int64(maxBytes))*100/int64(maxBytes), alg, KeyBytes(alg))
	}
	if low := int64(maxBytes) * 60 / 100; used < low {
		t.Errorf("a full pool retains %d B, under 60%% of its MaxBytes %d: KeyBytes(%s)=%d overstates a key, and the pool holds fewer than the cap allows",
			used, maxBytes, alg, KeyBytes(alg))
	}
	cancel()
	<-done
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
