package rootrotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// flakyStatus answers RotationStatus with an error failures times, then
// with a root far from expiry; it records when it was asked.
type flakyStatus struct {
	recorder
	mu       sync.Mutex
	failures int
	asked    []time.Time
}

func (f *flakyStatus) RotationStatus(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, time.Now())
	if len(f.asked) <= f.failures {
		return Status{}, errors.New("etcdserver: leader changed")
	}
	return Status{Phase: PhaseComplete, Current: &x509.Certificate{NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}}, nil
}

func (f *flakyStatus) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.asked...)
}

// TestAutoRetriesSoonerAfterAFailure: a failed check is tried again after
// autoRetryAfter, doubling with each failure in a row, not after the whole
// interval (an hour in serve), and a success goes back to the interval.
func TestAutoRetriesSoonerAfterAFailure(t *testing.T) {
	defer func(d time.Duration) { autoRetryAfter = d }(autoRetryAfter)
	autoRetryAfter = 50 * time.Millisecond
	ca := &flakyStatus{failures: 3}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Auto(ctx, Options{CA: ca}, time.Hour, time.Hour) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(ca.times()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// A success that did not go back to the interval would check again
	// after the next retry wait (400 ms): give it five times that, counted
	// from the success itself, not from when this loop noticed it.
	if asked := ca.times(); len(asked) >= 4 {
		time.Sleep(time.Until(asked[3].Add(2 * time.Second)))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	asked := ca.times()
	if len(asked) != 4 {
		t.Fatalf("RotationStatus asked %d times, want 4 (3 failures retried, then the interval)", len(asked))
	}
	// The upper bound tells a retry from the hour-long interval, no more:
	// a starved machine can wake Auto's timer seconds late.
	for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		if got := asked[i+1].Sub(asked[i]); got < want || got > want+20*time.Second {
			t.Errorf("wait after failure %d: %s, want about %s", i+1, got, want)
		}
	}
}

// stoppedStatus is a RotationStatus read cut short by the process stopping:
// it cancels Auto's context and fails with it, as client-go does.
type stoppedStatus struct {
	recorder
	stop context.CancelFunc
}

func (s *stoppedStatus) RotationStatus(ctx context.Context) (Status, error) {
	s.stop()
	return Status{}, fmt.Errorf("reading CA Secret: %w", ctx.Err())
}

// TestAutoStopsQuietly: serve stopping while Auto reads the rotation status
// is no error line (the other steps' errors are not logged then either).
func TestAutoStopsQuietly(t *testing.T) {
	var errLines []string
	log := funcr.New(func(_, args string) {
		if !strings.HasPrefix(args, `"level"=`) {
			errLines = append(errLines, args)
		}
	}, funcr.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Auto(ctx, Options{CA: &stoppedStatus{stop: cancel}, Log: log}, time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(errLines) > 0 {
		t.Errorf("error lines: %q", errLines)
	}
}
