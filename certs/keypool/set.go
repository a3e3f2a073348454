package keypool

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"sync"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Set holds one Pool per pooled key algorithm. The default algorithm's pool
// exists from the start; other pooled algorithms get theirs on first use
// (MeshConfig's certKeyBitSize can change while running) and are refilled
// from then on, so no CPU goes into sizes nobody asked for. Algorithms that
// are not pooled (see Pooled) are generated on each request.
type Set struct {
	opts Options

	mu      sync.Mutex
	pools   map[certs.KeyAlgorithm]*Pool
	ctx     context.Context // set once Start runs; nil before
	stopped bool
	running sync.WaitGroup
}

// NewSet creates the set and the pool for opts.Algorithm (the default one).
func NewSet(opts Options) (*Set, error) {
	p, err := New(opts)
	if err != nil {
		return nil, err
	}
	s := &Set{opts: opts, pools: map[certs.KeyAlgorithm]*Pool{p.Algorithm(): p}}
	s.opts.Algorithm = p.Algorithm()
	return s, nil
}

// Default is the algorithm used when a request names none.
func (s *Set) Default() certs.KeyAlgorithm { return s.opts.Algorithm }

// Pooled reports whether a Set keeps a pool for alg: the named algorithms
// (RSA 2048, 3072 and 4096, ECDSA P-256 and P-384). The other RSA sizes
// MeshConfig's certKeyBitSize allows (2048-4096) are rare; a pool per size
// would keep up to 2049 stocks of keys alive for sizes asked for once.
func Pooled(alg certs.KeyAlgorithm) bool {
	return slices.Contains(certs.KeyAlgorithms, alg.OrDefault())
}

// UnpooledLabel is the algorithm label fsm_webhooks_keypool_unpooled_total
// counts an unpooled alg under: the range between the pooled RSA sizes it
// falls in ("RSA2049-3071" for RSA2560), or "other". One series per size
// would be up to 2045 series; the range says the same to an operator (which
// pooled size is next, below and above, and roughly the cost), and the exact
// size is MeshConfig's certKeyBitSize.
func UnpooledLabel(alg certs.KeyAlgorithm) string {
	bits := alg.RSABits()
	lo, hi := 0, 0
	for _, a := range certs.KeyAlgorithms {
		switch b := a.RSABits(); {
		case b == 0:
		case b < bits && b > lo:
			lo = b
		case b > bits && (hi == 0 || b < hi):
			hi = b
		}
	}
	if bits == 0 || lo == 0 || hi == 0 || Pooled(alg) {
		return "other"
	}
	return fmt.Sprintf("RSA%d-%d", lo+1, hi-1)
}

// Pool returns the pool for alg (empty means the default), creating it. An
// algorithm that is not Pooled is an error: use Get.
func (s *Set) Pool(alg certs.KeyAlgorithm) (*Pool, error) {
	if alg == "" {
		alg = s.opts.Algorithm
	}
	if err := alg.Validate(); err != nil {
		return nil, fmt.Errorf("keypool: %w", err)
	}
	if !Pooled(alg) && alg != s.opts.Algorithm {
		return nil, fmt.Errorf("keypool: %s keys are not pooled", alg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pools[alg]; ok {
		return p, nil
	}
	o := s.opts
	o.Algorithm = alg
	p, err := New(o)
	if err != nil {
		return nil, err
	}
	s.pools[alg] = p
	if s.ctx != nil && !s.stopped {
		s.startLocked(p)
	}
	return p, nil
}

// Get returns a key of alg (empty means the default): from its pool, or
// generated inline when alg is not pooled. It returns ctx's error when ctx
// ends before a key is ready.
func (s *Set) Get(ctx context.Context, alg certs.KeyAlgorithm) (crypto.Signer, error) {
	if alg != "" && alg != s.opts.Algorithm && !Pooled(alg) {
		if err := alg.Validate(); err != nil {
			return nil, fmt.Errorf("keypool: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("keypool: %s key: %w", alg, err)
		}
		generate := s.opts.Generate
		if generate == nil {
			generate = certs.GenerateKey
		}
		unpooled.WithLabelValues(UnpooledLabel(alg)).Inc()
		res := make(chan generated, 1)
		go func() {
			k, err := generate(alg)
			res <- generated{k, err}
		}()
		select {
		case r := <-res:
			if r.err != nil {
				return nil, fmt.Errorf("keypool: generating %s key: %w", alg, r.err)
			}
			return r.key, nil
		case <-ctx.Done():
			// The generation runs to its end and its key is dropped:
			// there is no pool to keep it in.
			return nil, fmt.Errorf("keypool: waiting for a %s key: %w", alg, ctx.Err())
		}
	}
	p, err := s.Pool(alg)
	if err != nil {
		return nil, err
	}
	return p.Get(ctx)
}

// Start refills every pool, present and future, until ctx is done.
func (s *Set) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return fmt.Errorf("keypool: set already started")
	}
	s.ctx = ctx
	for _, p := range s.pools {
		s.startLocked(p)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true // no pool may start once Wait begins
	s.mu.Unlock()
	s.running.Wait()
	return nil
}

func (s *Set) startLocked(p *Pool) {
	ctx := s.ctx
	s.running.Go(func() {
		if err := p.Start(ctx); err != nil {
			p.log.Error(err, "Key pool stopped")
		}
	})
}
