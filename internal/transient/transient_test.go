package transient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestIs(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"500 etcd leader changed", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), true},
		{"503", apierrors.NewServiceUnavailable("try later"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"server timeout", apierrors.NewServerTimeout(gr, "create", 1), true},
		{"gateway timeout", apierrors.NewTimeoutError("timed out", 1), true},
		{"connection refused", &wrapped{syscall.ECONNREFUSED}, true},
		// The apiserver unreachable for a moment: a node whose Service
		// routes are not programmed yet, a control-plane node rebooting.
		{"dial i/o timeout", &url.Error{Op: "Get", URL: "https://10.96.0.1:443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}}, true},
		{"no route to host", &wrapped{syscall.EHOSTUNREACH}, true},
		{"network unreachable", &wrapped{syscall.ENETUNREACH}, true},
		{"http2 connection lost", errors.New("Get \"https://10.96.0.1:443/api\": http2: client connection lost"), true},
		{"wrapped with context", errorsJoin("reading CA Secret fsm-system/fsm-ca-bundle", apierrors.NewInternalError(errors.New("x"))), true},
		{"not found", apierrors.NewNotFound(gr, "x"), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), false},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), false},
		{"invalid data", errors.New("ca.crt: no PEM certificate"), false},
	}
	for _, tc := range cases {
		if got := Is(tc.err); got != tc.want {
			t.Errorf("%s: Is(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

type wrapped struct{ err error }

// timeoutErr is what net and crypto/tls return for a dial or handshake
// that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (w *wrapped) Error() string { return "dial tcp 10.0.0.1:443: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func errorsJoin(ctx string, err error) error { return &ctxErr{ctx, err} }

type ctxErr struct {
	ctx string
	err error
}

func (e *ctxErr) Error() string { return e.ctx + ": " + e.err.Error() }
func (e *ctxErr) Unwrap() error { return e.err }

func TestRetry(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("try later")
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "x", errors.New("no"))
	cases := []struct {
		name        string
		errs        []error // f's answers, then nil
		window      time.Duration
		wantCalls   int
		wantErr     error
		wantAttempt string // in the error, when several attempts failed
	}{
		{name: "success at once", wantCalls: 1},
		{name: "success after two transient errors", errs: []error{unavailable, unavailable}, window: time.Minute, wantCalls: 3},
		{name: "a permanent error ends at once", errs: []error{forbidden, nil}, window: time.Minute, wantCalls: 1, wantErr: forbidden},
		{name: "a permanent error after a transient one", errs: []error{unavailable, forbidden}, window: time.Minute, wantCalls: 2, wantErr: forbidden},
		{name: "the window ends the retries", errs: []error{unavailable, unavailable, unavailable, unavailable, unavailable},
			window: 600 * time.Millisecond, wantCalls: 2, wantErr: unavailable, wantAttempt: "after 2 attempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			clk := &virtualClock{now: time.Unix(0, 0)}
			err := retry(context.Background(), clk, logr.Discard(), tc.window, "test", func(context.Context) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls {
				t.Errorf("f called %d times, want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantAttempt != "" && (err == nil || !strings.Contains(err.Error(), tc.wantAttempt)) {
				t.Errorf("err = %v, want it to say %q", err, tc.wantAttempt)
			}
		})
	}
}

// TestRetryWindow: with the default window the waits grow from 250 ms to
// the 8 s cap, each within its 10% jitter, and the retries stop at the
// last wait that still ends inside the window: 11 or 12 attempts in 60 s,
// whatever the jitter drew.
func TestRetryWindow(t *testing.T) {
	for range 20 {
		clk := &virtualClock{now: time.Unix(0, 0)}
		start := clk.now
		calls := 0
		err := retry(context.Background(), clk, logr.Discard(), 0, "test", func(context.Context) error {
			calls++
			return apierrors.NewServiceUnavailable("try later")
		})
		if calls < 11 || calls > 12 {
			t.Fatalf("f called %d times in the default window, want 11 or 12 (waits %v)", calls, clk.waits)
		}
		if want := fmt.Sprintf("after %d attempts in 1m0s", calls); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to say %q", err, want)
		}
		base := 250 * time.Millisecond
		for i, d := range clk.waits {
			if d < base || d > base+base/10 {
				t.Fatalf("wait %d = %s, want %s to %s (waits %v)", i+1, d, base, base+base/10, clk.waits)
			}
			base = min(2*base, 8*time.Second)
		}
		if elapsed := clk.now.Sub(start); elapsed > Window || elapsed+base+base/10 <= Window {
			t.Fatalf("retried for %s, want at most the window (%s) and within one wait of its end (waits %v)", elapsed, Window, clk.waits)
		}
	}
}

// virtualClock's time moves only when retry waits, by exactly the wait, so
// the decisions under test do not depend on how fast the machine runs.
type virtualClock struct {
	now   time.Time
	waits []time.Duration
}

func (c *virtualClock) Now() time.Time { return c.now }

func (c *virtualClock) After(d time.Duration) <-chan time.Time {
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestRetryStopsWithContext: a caller giving up is not kept waiting out
// the window.
func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Retry(ctx, logr.Discard(), time.Hour, "test", func(context.Context) error {
		return apierrors.NewServiceUnavailable("try later")
	})
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("err = %v, want the last 503", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Retry returned %s after its context ended", d)
	}
}
