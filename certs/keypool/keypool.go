// Package keypool keeps a bounded stock of freshly generated private keys so
// that issuing a certificate on a request path (a pod admission) costs one
// signature instead of an RSA key generation (~50 ms for RSA-2048 on one
// core). Refill runs in the background; an empty pool falls back to
// generating inline, so a burst only slows down, never fails.
package keypool

import (
	"context"
	"crypto"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Defaults for Options.
const (
	// DefaultSize keeps enough keys for a burst of pod creations (a
	// Deployment scaled by 30) while costing ~50 KB of memory for RSA-2048.
	DefaultSize = 32
	// DefaultWorkers refills with one goroutine, so refill takes at most one
	// core from admissions after a burst.
	DefaultWorkers = 1
	// retryDelay spaces out refill attempts after a generation error.
	retryDelay = time.Second
)

var (
	hits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_hits_total",
		Help: "Private keys served from the pre-generated pool.",
	}, []string{"algorithm"})
	misses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_misses_total",
		Help: "Private keys generated inline because the pool was empty.",
	}, []string{"algorithm"})
	size = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_keypool_size",
		Help: "Pre-generated private keys currently in the pool.",
	}, []string{"algorithm"})
	unpooled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_keypool_unpooled_total",
		Help: "Private keys generated inline because their algorithm is not pooled (RSA sizes other than 2048, 3072 and 4096).",
	}, []string{"algorithm"})
)

func init() {
	metrics.Registry.MustRegister(hits, misses, size, unpooled)
}

// GenerateFunc makes one private key.
type GenerateFunc func(certs.KeyAlgorithm) (crypto.Signer, error)

// Options configure a Pool.
type Options struct {
	// Algorithm of the pooled keys; empty means certs.DefaultKeyAlgorithm.
	Algorithm certs.KeyAlgorithm
	// Size is the number of keys kept ready. Zero disables pooling: every
	// Get generates inline (and counts as a miss).
	Size int
	// Workers refilling concurrently; zero means DefaultWorkers.
	Workers int
	// Generate makes keys; nil means certs.GenerateKey.
	Generate GenerateFunc
	Logger   logr.Logger
}

// Pool is a bounded stock of private keys of one algorithm. Get is safe for
// concurrent use; Start runs the refill.
type Pool struct {
	alg      certs.KeyAlgorithm
	keys     chan crypto.Signer
	workers  int
	generate GenerateFunc
	log      logr.Logger

	hits, misses prometheus.Counter
	size         prometheus.Gauge
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
	p := &Pool{
		alg:      alg,
		keys:     make(chan crypto.Signer, opts.Size),
		workers:  opts.Workers,
		generate: opts.Generate,
		log:      opts.Logger.WithValues("algorithm", string(alg)),
		hits:     hits.WithLabelValues(string(alg)),
		misses:   misses.WithLabelValues(string(alg)),
		size:     size.WithLabelValues(string(alg)),
	}
	if p.workers == 0 {
		p.workers = DefaultWorkers
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

// Cap is the configured size.
func (p *Pool) Cap() int { return cap(p.keys) }

// Get returns a pooled key, or generates one inline when the pool is empty.
// A key is handed out once.
func (p *Pool) Get() (crypto.Signer, error) {
	select {
	case k := <-p.keys:
		p.size.Dec()
		p.hits.Inc()
		return k, nil
	default:
	}
	p.misses.Inc()
	k, err := p.generate(p.alg)
	if err != nil {
		return nil, fmt.Errorf("keypool: generating %s key: %w", p.alg, err)
	}
	return k, nil
}

// Start refills the pool until ctx is done (controller-runtime's
// manager.Runnable). Keys left in the pool are dropped on return.
func (p *Pool) Start(ctx context.Context) error {
	if cap(p.keys) == 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
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

func (p *Pool) refill(ctx context.Context) {
	for ctx.Err() == nil {
		k, err := p.generate(p.alg)
		if err != nil {
			p.log.Error(err, "Generating a pooled key failed; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(retryDelay):
			}
			continue
		}
		select {
		case p.keys <- k:
			p.size.Inc()
		case <-ctx.Done():
		}
	}
}

// WaitFull blocks until the pool holds Cap keys or ctx is done. Meant for
// start-up (be warm before serving) and tests.
func (p *Pool) WaitFull(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(p.keys) < cap(p.keys) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("keypool: waiting for %d %s keys (have %d): %w", cap(p.keys), p.alg, len(p.keys), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
