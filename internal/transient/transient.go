// Package transient tells apiserver errors that may pass in a moment (an
// etcd leader change, an overloaded or restarting apiserver) from answers
// that will not change, and retries the former for a bounded time, so a
// start-up step does not end the process on one unlucky request.
package transient

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// Is reports whether the apiserver may answer err's request differently in
// a moment: timeouts, 429, 500, 503, a connection refused, reset or cut
// short, and an apiserver not reachable (a dial or TLS handshake that timed
// out, no route to it: a node whose Service routes are not programmed yet,
// a control-plane node restarting), which ended serve at once and so
// restarted the pod. client-go itself retries only a 429 or 5xx that
// carries Retry-After.
func Is(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
		utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		utilnet.IsTimeout(err) || utilnet.IsHTTP2ConnectionLost(err) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// Window is how long Retry keeps trying by default: long enough for an
// etcd leader election or an apiserver restart, well inside the chart's
// startup probe (120 s).
const Window = 60 * time.Second

// Retry runs f until it succeeds, fails with an error Is does not call
// transient, ctx ends, or window (Window if 0) has passed since the first
// attempt; waits grow from 250 ms to 8 s. Each retried failure is logged
// with what. The error returned is f's last, naming the attempts when more
// than one was made.
func Retry(ctx context.Context, log logr.Logger, window time.Duration, what string, f func(context.Context) error) error {
	return retry(ctx, clock.RealClock{}, log, window, what, f)
}

// timeSource is the part of a clock retry reads: its tests run on a
// virtual one, so a stalled test goroutine cannot change a decision.
type timeSource interface {
	Now() time.Time
	After(time.Duration) <-chan time.Time
}

func retry(ctx context.Context, clk timeSource, log logr.Logger, window time.Duration, what string, f func(context.Context) error) error {
	if window == 0 {
		window = Window
	}
	deadline := clk.Now().Add(window)
	backoff := wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 8 * time.Second}
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil || !Is(err) {
			return err
		}
		d := backoff.Step()
		if ctx.Err() != nil || clk.Now().Add(d).After(deadline) {
			if attempt == 1 {
				return err
			}
			return fmt.Errorf("%w (after %d attempts in %s)", err, attempt, window)
		}
		log.Info("Transient apiserver error, retrying", "what", what, "attempt", attempt, "in", d, "error", err.Error())
		select {
		case <-ctx.Done():
			return err
		case <-clk.After(d):
		}
	}
}
