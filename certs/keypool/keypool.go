// Package keypool keeps a bounded stock of freshly generated private keys so
// that issuing a certificate on a request path (a pod admission) costs one
// signature instead of an RSA key generation (~50 ms for RSA-2048 on one
// core). Refill runs in the background on up to GOMAXPROCS workers, each
// starting a key only while no goroutine of the process waits for a CPU
// (admissions first); the stock grows to the bursts it sees, within a memory
// cap, and shrinks back when idle (keys above the decayed target are
// dropped). An empty pool generates inline but hands out a refilled key if
// one lands first, so a burst only slows down, never fails, and no admission
// waits longer than one key generation or its own deadline.
package keypool

import (
	"context"
	"crypto"
	"fmt"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Defaults for Options.
const (
	// DefaultSize is the floor of the stock: keys kept ready when idle,
	// enough for a Deployment scaled by 30 (~210 KB for RSA-2048).
	DefaultSize = 32
	// DefaultMaxBytes caps the stock a pool may grow to after bursts:
	// about 630 RSA-2048 or 4,000 ECDSA P-256 keys (see KeyBytes).
	DefaultMaxBytes = 4 << 20
	// DefaultWindow is how often the target is re-decided from the keys
	// taken since.
	DefaultWindow = 10 * time.Second
	// retryDelay spaces out refill attempts after a generation error.
	retryDelay = time.Second
	// idlePoll bounds how long a worker sleeps while the pool is at its
	// target (a Get that leaves it below half wakes it sooner).
	idlePoll = 250 * time.Millisecond
	// deferMin and deferMax bound the back-off of a worker that found the
	// process busy.
	deferMin, deferMax = time.Millisecond, 50 * time.Millisecond
)

var (
	hits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_hits_total",
		Help: "Private keys served from the pre-generated pool.",
	}, []string{"algorithm"})
	misses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_misses_total",
		Help: "Private keys asked for while the pool was empty (an inline generation started; see _inline_used_total).",
	}, []string{"algorithm"})
	inlineUsed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_inline_used_total",
		Help: "Misses served by their own inline generation rather than by a refilled key that landed first.",
	}, []string{"algorithm"})
	size = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_keypool_size",
		Help: "Pre-generated private keys currently in the pool.",
	}, []string{"algorithm"})
	target = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_keypool_target",
		Help: "Keys the pool currently refills to (between --key-pool-size and the memory cap).",
	}, []string{"algorithm"})
	deferred = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_refill_deferred_total",
		Help: "Times a refill worker held back because other goroutines waited for a CPU.",
	}, []string{"algorithm"})
	unpooled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_unpooled_total",
		Help: "Private keys generated inline because their algorithm is not pooled (RSA sizes other than 2048, 3072 and 4096), by the range between pooled sizes the size falls in (RSA2049-3071, RSA3073-4095).",
	}, []string{"algorithm"})
)

func init() {
	metrics.Registry.MustRegister(hits, misses, inlineUsed, size, target, deferred, unpooled)
}

// GenerateFunc makes one private key.
type GenerateFunc func(certs.KeyAlgorithm) (crypto.Signer, error)

// Options configure a Pool.
type Options struct {
	// Algorithm of the pooled keys; empty means certs.DefaultKeyAlgorithm.
	Algorithm certs.KeyAlgorithm
	// Size is the floor of the stock (keys kept ready when idle). Zero
	// disables pooling: every Get generates inline (and counts as a miss).
	Size int
	// MaxBytes caps the stock after bursts, in estimated key memory
	// (KeyBytes); zero means DefaultMaxBytes. The cap is never below Size.
	MaxBytes int
	// Workers refilling concurrently; zero means GOMAXPROCS.
	Workers int
	// Window between target decisions; zero means DefaultWindow.
	Window time.Duration
	// Busy reports whether refill should hold back; nil means "a goroutine
	// of this process is runnable but not running" (runtime/metrics
	// /sched/goroutines/runnable).
	Busy func() bool
	// Generate makes keys; nil means certs.GenerateKey.
	Generate GenerateFunc
	Logger   logr.Logger
}

// KeyBytes estimates the heap one pooled key of alg holds, with the PKCS#8
// PEM the pool stores beside it (certs.WithEncodedPEM; measured on Go 1.26:
// RSA-2048 6.5 KB, 3072 9.7 KB, ECDSA P-256 1.0 KB, P-384 1.3 KB; rounded
// up).
func KeyBytes(alg certs.KeyAlgorithm) int {
	switch alg = alg.OrDefault(); {
	case alg == certs.ECDSAP256:
		return 1 << 10
	case alg == certs.ECDSAP384:
		return 3 << 10
	case alg.RSABits() != 0:
		return alg.RSABits()*3 + 512
	}
	return 8 << 10
}

// Sizing is what NextTarget decides from.
type Sizing struct {
	Floor, Max int // bounds of the target (Floor <= Max)
	Target     int // the current target
	Taken      int // keys handed out (hits and misses) in the last window
}

// NextTarget is the stock to refill to for the next window. A window that
// took more than half the target was a burst: hold twice that burst, so the
// next one is served from stock while refill (which only uses idle CPU)
// catches up. A window that took less than a quarter lets the target decay by
// an eighth, back to the floor after a few minutes idle. Always within
// [Floor, Max].
func NextTarget(s Sizing) int {
	t := s.Target
	switch {
	case s.Taken*2 > t:
		t = max(t, 2*s.Taken)
	case s.Taken*4 < t:
		t -= max(1, t/8)
	}
	return min(max(t, s.Floor), s.Max)
}

// Pool is a bounded stock of private keys of one algorithm. Get is safe for
// concurrent use; Start runs the refill.
type Pool struct {
	alg        certs.KeyAlgorithm
	keys       chan crypto.Signer
	floor      int
	target     atomic.Int64
	taken      atomic.Int64 // in the current window
	refilling  atomic.Int64 // keys workers are generating now
	wake       chan struct{}
	idle       time.Duration    // idlePoll; tests lengthen it
	resized    func(target int) // tests, set before Start: each window's target, after the trim to it
	workers    int
	window     time.Duration
	busy       func() bool
	generate   GenerateFunc
	log        logr.Logger
	hits       prometheus.Counter
	misses     prometheus.Counter
	inlineUsed prometheus.Counter
	deferred   prometheus.Counter
	size       prometheus.Gauge
	targetG    prometheus.Gauge
}

// New validates opts and returns an empty pool; call Start to fill it.
func New(opts Options) (*Pool, error) {
	alg := opts.Algorithm.OrDefault()
	if err := alg.Validate(); err != nil {
		return nil, fmt.Errorf("keypool: %w", err)
	}
	if opts.Size < 0 {
		return nil, fmt.Errorf("keypool: Size must not be negative, got %d", opts.Size)
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("keypool: Workers must not be negative, got %d", opts.Workers)
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("keypool: MaxBytes must not be negative, got %d", opts.MaxBytes)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	capacity := 0
	if opts.Size > 0 {
		capacity = max(opts.Size, opts.MaxBytes/KeyBytes(alg))
	}
	p := &Pool{
		alg:        alg,
		keys:       make(chan crypto.Signer, capacity),
		floor:      opts.Size,
		wake:       make(chan struct{}, 1),
		idle:       idlePoll,
		workers:    opts.Workers,
		window:     opts.Window,
		busy:       opts.Busy,
		generate:   opts.Generate,
		log:        opts.Logger.WithValues("algorithm", string(alg)),
		hits:       hits.WithLabelValues(string(alg)),
		misses:     misses.WithLabelValues(string(alg)),
		inlineUsed: inlineUsed.WithLabelValues(string(alg)),
		deferred:   deferred.WithLabelValues(string(alg)),
		size:       size.WithLabelValues(string(alg)),
		targetG:    target.WithLabelValues(string(alg)),
	}
	p.target.Store(int64(opts.Size))
	if p.workers == 0 {
		p.workers = runtime.GOMAXPROCS(0)
	}
	if p.window == 0 {
		p.window = DefaultWindow
	}
	if p.busy == nil {
		p.busy = newSchedulerBusy()
	}
	if p.generate == nil {
		p.generate = certs.GenerateKey
	}
	return p, nil
}

// Algorithm is the algorithm of the pooled keys.
func (p *Pool) Algorithm() certs.KeyAlgorithm { return p.alg }

// Len is the number of keys ready now.
func (p *Pool) Len() int { return len(p.keys) }

// Cap is the most keys the pool may hold (the memory cap).
func (p *Pool) Cap() int { return cap(p.keys) }

// Target is the stock the pool currently refills to.
func (p *Pool) Target() int { return int(p.target.Load()) }

type generated struct {
	key crypto.Signer
	err error
}

// Get returns a pooled key. When the pool is empty it generates one inline,
// but takes a refilled key if one lands first and puts its own into the
// pool when done: the wait is at most one generation, no CPU is wasted. When
// ctx ends first it returns ctx's error, and the key still being generated
// goes into the pool. A key is handed out once.
func (p *Pool) Get(ctx context.Context) (crypto.Signer, error) {
	p.taken.Add(1)
	select {
	case k := <-p.keys:
		p.took()
		p.hits.Inc()
		return k, nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keypool: %s key: %w", p.alg, err)
	}
	p.misses.Inc()
	p.signal()
	res := make(chan generated, 1)
	go func() {
		k, err := p.inline()
		res <- generated{k, err}
	}()
	keys := p.keys // nil (never ready) when pooling is off
	if cap(keys) == 0 {
		keys = nil
	}
	select {
	case r := <-res:
		p.inlineUsed.Inc()
		return r.key, r.err
	case k := <-keys:
		p.took()
		go p.keep(res)
		return k, nil
	case <-ctx.Done():
		go p.keep(res)
		return nil, fmt.Errorf("keypool: waiting for a %s key: %w", p.alg, ctx.Err())
	}
}

// keep puts the key of an inline generation nobody waits for any more into
// the pool (dropped when pooling is off or the pool is full).
func (p *Pool) keep(res <-chan generated) {
	if r := <-res; r.err == nil {
		p.put(r.key)
	}
}

func (p *Pool) inline() (crypto.Signer, error) {
	k, err := p.generate(p.alg)
	if err != nil {
		return nil, fmt.Errorf("keypool: generating %s key: %w", p.alg, err)
	}
	return k, nil
}

// took accounts for a key leaving the pool. A worker is woken only once
// the pool is below half its target: waking a parked worker costs the
// admission a futex call (12 µs of the ECDSA handler's ~0.28 ms), and a pool
// above half is topped up by the workers' next idle poll, at most 250 ms
// later, in one batch.
func (p *Pool) took() {
	p.size.Dec()
	if 2*len(p.keys) < p.Target() {
		p.signal()
	}
}

func (p *Pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// put adds k unless the pool is at its cap.
func (p *Pool) put(k crypto.Signer) bool {
	select {
	case p.keys <- k:
		p.size.Inc()
		return true
	default:
		return false
	}
}

// Start refills the pool until ctx is done (controller-runtime's
// manager.Runnable). Keys left in the pool are dropped on return.
func (p *Pool) Start(ctx context.Context) error {
	p.targetG.Set(float64(p.Target()))
	if cap(p.keys) == 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.resize(ctx) })
	for range p.workers {
		wg.Go(func() { p.refill(ctx) })
	}
	wg.Wait()
	for {
		select {
		case <-p.keys:
			p.size.Dec()
		default:
			return nil
		}
	}
}

// resize re-decides the target every window.
func (p *Pool) resize(ctx context.Context) {
	t := time.NewTicker(p.window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := NextTarget(Sizing{Floor: p.floor, Max: cap(p.keys), Target: p.Target(), Taken: int(p.taken.Swap(0))})
		p.target.Store(int64(next))
		p.targetG.Set(float64(next))
		p.trim(next)
		if p.resized != nil {
			p.resized(next)
		}
		p.signal()
	}
}

// trim drops keys above n: the stock follows the target as it decays after a
// burst, so the memory of the largest burst is not held for the life of the
// process. A Get racing it only finds the pool a key shorter.
func (p *Pool) trim(n int) {
	for len(p.keys) > n {
		select {
		case <-p.keys:
			p.size.Dec()
		default:
			return
		}
	}
}

func (p *Pool) refill(ctx context.Context) {
	backoff := deferMin
	for ctx.Err() == nil {
		// Reserve the key before generating it, so workers together never
		// overshoot the target.
		if int(p.refilling.Add(1))+len(p.keys) > p.Target() {
			p.refilling.Add(-1)
			p.sleep(ctx, p.idle, true)
			continue
		}
		// Admissions first: start a key only while nothing else of this
		// process waits for a CPU. A key already started runs to its end
		// (Go preempts it every 10 ms for waiting goroutines).
		if p.busy() {
			p.refilling.Add(-1)
			p.deferred.Inc()
			p.sleep(ctx, backoff, false)
			backoff = min(2*backoff, deferMax)
			continue
		}
		backoff = deferMin
		k, err := p.generate(p.alg)
		if err == nil {
			// Encoded now, on idle CPU, rather than by the admission.
			k, err = certs.WithEncodedPEM(k)
		}
		if err == nil {
			p.put(k)
		}
		p.refilling.Add(-1)
		if err != nil {
			p.log.Error(err, "Generating a pooled key failed; retrying")
			p.sleep(ctx, retryDelay, false)
		}
	}
}

// sleep waits d, or less when ctx ends or (wakeable) a Get signals.
func (p *Pool) sleep(ctx context.Context, d time.Duration, wakeable bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = p.wake
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// newSchedulerBusy reports whether a goroutine of this process is runnable
// but not running: someone (an admission, a controller) waits for a CPU.
func newSchedulerBusy() func() bool {
	var mu sync.Mutex
	sample := []rtmetrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		rtmetrics.Read(sample)
		return sample[0].Value.Kind() == rtmetrics.KindUint64 && sample[0].Value.Uint64() > 0
	}
}

// WaitFull blocks until the pool holds its current target or ctx is done.
// Meant for start-up (be warm before serving) and tests.
func (p *Pool) WaitFull(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(p.keys) < p.Target() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("keypool: waiting for %d %s keys (have %d): %w", p.Target(), p.alg, len(p.keys), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
