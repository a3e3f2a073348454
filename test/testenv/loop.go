package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Loop calls a function on every tick until Finish, counting the calls and
// recording every failure with its time: a test proves that the apiserver
// reached a webhook throughout a certificate renewal or a server restart.
type Loop struct {
	mu       sync.Mutex
	errs     []string
	total    int
	cancel   context.CancelFunc
	finished chan struct{}
}

// StartLoop calls admit every interval on its own goroutine until Finish. A
// call cut short by Finish is not counted.
func StartLoop(interval time.Duration, admit func(context.Context) error) *Loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(l.finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := admit(ctx)
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.total++
			if err != nil {
				l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// minCalls is how many calls Finish wants: it lets the loop run on (up to
// a minute) until they are made, so a starved machine that answers slowly
// makes fewer calls per second, not a failed test; what is proven is that
// none failed.
const minCalls = 10

// Finish stops the loop, once it has made at least minCalls calls, and
// fails the test if any failed (or if it could not make them in a minute).
func (l *Loop) Finish(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		n := l.total
		l.mu.Unlock()
		if n >= minCalls {
			break
		}
	}
	l.cancel()
	<-l.finished
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total < minCalls {
		t.Errorf("admission loop made only %d requests in a minute, want %d", l.total, minCalls)
	}
	if len(l.errs) > 0 {
		t.Errorf("%d of %d admissions failed, first ones: %v", len(l.errs), l.total, l.errs[:min(5, len(l.errs))])
	}
	t.Logf("admission loop: %d requests, %d failures", l.total, len(l.errs))
}
