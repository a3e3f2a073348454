package keypool

import (
	"context"
	"crypto"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

func TestNextTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Sizing
		want int
	}{
		{"idle at the floor stays", Sizing{Floor: 32, Max: 900, Target: 32, Taken: 0}, 32},
		{"steady use keeps the target", Sizing{Floor: 32, Max: 900, Target: 32, Taken: 10}, 32},
		{"exactly half is not a burst", Sizing{Floor: 32, Max: 900, Target: 32, Taken: 16}, 32},
		{"a burst doubles into stock", Sizing{Floor: 32, Max: 900, Target: 32, Taken: 100}, 200},
		{"a bigger burst grows again", Sizing{Floor: 32, Max: 900, Target: 200, Taken: 150}, 300},
		{"a burst over the cap stops at the cap", Sizing{Floor: 32, Max: 900, Target: 200, Taken: 5000}, 900},
		{"a quiet window decays by an eighth", Sizing{Floor: 32, Max: 900, Target: 800, Taken: 10}, 700},
		{"exactly a quarter does not decay", Sizing{Floor: 0, Max: 900, Target: 32, Taken: 8}, 32},
		{"decay never goes below the floor", Sizing{Floor: 32, Max: 900, Target: 33, Taken: 0}, 32},
		{"a moderate window holds", Sizing{Floor: 32, Max: 900, Target: 800, Taken: 300}, 800},
		{"a target above a lowered cap is cut", Sizing{Floor: 4, Max: 10, Target: 50, Taken: 20}, 10},
		{"a small target still decays", Sizing{Floor: 0, Max: 100, Target: 7, Taken: 0}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NextTarget(tc.in); got != tc.want {
				t.Fatalf("NextTarget(%+v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestNextTargetDecaysToFloorWithinMinutes(t *testing.T) {
	s := Sizing{Floor: 32, Max: 900, Target: 900}
	windows := 0
	for s.Target > s.Floor {
		s.Target = NextTarget(s)
		windows++
	}
	// 10 s windows: back at the floor in about 5 minutes.
	if windows < 20 || windows > 40 {
		t.Fatalf("900 → 32 took %d windows, want 20-40", windows)
	}
}

func TestCapFollowsMemoryBudget(t *testing.T) {
	for _, tc := range []struct {
		alg      certs.KeyAlgorithm
		size     int
		maxBytes int
		want     int
	}{
		{certs.RSA2048, 32, 0, DefaultMaxBytes / 6656},
		{certs.ECDSAP256, 32, 0, DefaultMaxBytes / 1024},
		{certs.RSA4096, 32, 1 << 20, (1 << 20) / 12800},
		{certs.RSA2048, 32, 1024, 32}, // never below Size
		{certs.RSA2048, 0, 0, 0},      // pooling off
	} {
		p, err := New(Options{Algorithm: tc.alg, Size: tc.size, MaxBytes: tc.maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		if p.Cap() != tc.want {
			t.Errorf("%s Size %d MaxBytes %d: Cap %d, want %d", tc.alg, tc.size, tc.maxBytes, p.Cap(), tc.want)
		}
	}
}

// fakeKeys hands out one key, counting calls, optionally blocking until
// released.
type fakeKeys struct {
	key   crypto.Signer
	calls atomic.Int64
	gate  chan struct{} // nil: never blocks
}

func (f *fakeKeys) generate(certs.KeyAlgorithm) (crypto.Signer, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	return f.key, nil
}

func newFakeKeys(t *testing.T) *fakeKeys {
	t.Helper()
	k, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeKeys{key: k}
}

func TestRefillHoldsBackWhileBusy(t *testing.T) {
	gen := newFakeKeys(t)
	var busy atomic.Bool
	busy.Store(true)
	p, err := New(Options{Algorithm: certs.RSA3072, Size: 8, Workers: 2, Generate: gen.generate, Busy: busy.Load})
	if err != nil {
		t.Fatal(err)
	}
	deferred0 := testutil.ToFloat64(deferred.WithLabelValues(string(certs.RSA3072)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- p.Start(ctx) }()
	// Polled, not slept for: on a starved machine both workers may take a
	// while to be scheduled at all.
	var d float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if d = testutil.ToFloat64(deferred.WithLabelValues(string(certs.RSA3072))) - deferred0; d >= 2 {
			break
		}
	}
	if d < 2 {
		t.Fatalf("deferred counter rose by %v in 10 s, want the workers' hold-backs counted", d)
	}
	time.Sleep(200 * time.Millisecond) // still busy: still nothing generated
	if n := gen.calls.Load(); n != 0 {
		t.Fatalf("%d keys generated while the process was busy", n)
	}
	busy.Store(false)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := p.WaitFull(wctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := gen.calls.Load(); n != 8 {
		t.Fatalf("%d keys generated to fill a target of 8: workers overshot", n)
	}
	cancel()
	<-done
}

func TestPoolGrowsToABurstAndBack(t *testing.T) {
	gen := newFakeKeys(t)
	p, err := New(Options{Algorithm: certs.RSA4096, Size: 4, MaxBytes: 100 * 8704, Window: 20 * time.Millisecond,
		Generate: gen.generate, Busy: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	targets := recordTargets(p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A burst of 30 in one window: taken before the pool starts, so its
	// first window holds all of them however the test goroutine is
	// scheduled (a 20 ms stall mid-burst on a starved machine split it).
	for range 30 {
		if _, err := p.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = p.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	if got := nextTarget(t, targets, deadline); got != 60 {
		t.Fatalf("target after a burst of 30 = %d, want 60", got)
	}
	if got := testutil.ToFloat64(target.WithLabelValues(string(certs.RSA4096))); got < 4 {
		t.Fatalf("target gauge = %v", got)
	}
	// Then idle windows: the target decays back to the floor.
	for got := 60; got != 4; {
		if got = nextTarget(t, targets, deadline); got < 4 {
			t.Fatalf("target decayed to %d, below the floor 4", got)
		}
	}
}

// recordTargets hands out the target p decides in each sizing window, in
// order, once the stock has been trimmed to it. A target that lasts one
// window (a burst's, 20 ms here) is seen however late the test goroutine
// runs: polling Target() every 5 ms on a starved machine could miss the 60
// and then wait in vain for a target that had come and gone.
func recordTargets(p *Pool) <-chan int {
	ch := make(chan int, 10000) // minutes of 20 ms windows
	p.resized = func(n int) {
		select {
		case ch <- n:
		default: // nobody reads any more: the test is over
		}
	}
	return ch
}

// nextTarget is the next window's target from recordTargets, failing t if
// none is decided by deadline.
func nextTarget(t *testing.T, targets <-chan int, deadline time.Time) int {
	t.Helper()
	select {
	case n := <-targets:
		return n
	case <-time.After(time.Until(deadline)):
		t.Fatalf("no sizing window decided a target by %s", deadline.Format(time.TimeOnly))
		return 0
	}
}

// A miss takes a refilled key that lands before its own inline key, and
// its inline key then goes to the pool rather than being thrown away.
func TestMissTakesARefilledKeyFirst(t *testing.T) {
	gen := newFakeKeys(t)
	gen.gate = make(chan struct{})
	p, err := New(Options{Algorithm: certs.ECDSAP384, Size: 2, Generate: gen.generate})
	if err != nil {
		t.Fatal(err)
	}
	used0 := testutil.ToFloat64(inlineUsed.WithLabelValues(string(certs.ECDSAP384)))
	var wg sync.WaitGroup
	got := make(chan crypto.Signer, 1)
	wg.Go(func() {
		k, err := p.Get(context.Background()) // empty, not started: generates inline, blocked on gate
		if err != nil {
			t.Error(err)
		}
		got <- k
	})
	for gen.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	refilled, _ := certs.GenerateKey(certs.ECDSAP384)
	p.put(refilled) // a worker's key lands first
	if k := <-got; k != refilled {
		t.Fatal("the miss waited for its own generation although a refilled key was there")
	}
	close(gen.gate) // the inline generation ends
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for p.Len() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Len() != 1 {
		t.Fatalf("pool holds %d keys, want the inline key kept", p.Len())
	}
	if d := testutil.ToFloat64(inlineUsed.WithLabelValues(string(certs.ECDSAP384))) - used0; d != 0 {
		t.Fatalf("inline_used rose by %v, want 0", d)
	}
}

func TestSchedulerBusySeesRunnableGoroutines(t *testing.T) {
	busy := newSchedulerBusy()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 4 * runtimeProcs() { // more spinners than Ps: some wait
		wg.Go(func() {
			for ctx.Err() == nil {
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for !busy() {
		if time.Now().After(deadline) {
			t.Fatal("runnable goroutines never reported while spinners outnumber the Ps")
		}
		time.Sleep(time.Millisecond)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
