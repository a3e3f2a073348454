package webhooks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
)

// TestUnreadyWhenDraining: once ctx ends, every readiness path fails with
// 503 and nothing else changes; before, every path is the mux's.
func TestUnreadyWhenDraining(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		path     string
		draining bool
		want     int
	}{
		{"/readyz", false, http.StatusOK},
		{"/readyz/injector", false, http.StatusOK},
		{"/readyz", true, http.StatusServiceUnavailable},
		{"/readyz/", true, http.StatusServiceUnavailable},
		{"/readyz/injector", true, http.StatusServiceUnavailable},
		{"/healthz", true, http.StatusOK},
		{"/metrics", true, http.StatusOK},
		{"/readyzz", true, http.StatusOK},
	} {
		t.Run(tc.path+"/draining="+strconv.FormatBool(tc.draining), func(t *testing.T) {
			ctx := context.Background()
			if tc.draining {
				ctx = ended
			}
			rec := httptest.NewRecorder()
			unreadyWhenDraining(ctx, ok).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.want {
				t.Errorf("GET %s: status %d, want %d (body %q)", tc.path, rec.Code, tc.want, rec.Body.String())
			}
		})
	}
}

// TestListenerDrains: after its context ends a listener keeps answering
// for the drain period, each answer with "Connection: close" (also on a
// keep-alive connection opened before), /readyz failing and /healthz
// passing; then it closes.
func TestListenerDrains(t *testing.T) {
	const drain = 1500 * time.Millisecond
	tm := defaultTimeouts
	tm.drain = drain
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	serveHTTP(gctx, g, "drain test", addr, unreadyWhenDraining(gctx, mux), nil, tm, logr.Discard())
	waitListening(t, func() (net.Conn, error) { return net.Dial("tcp", addr) })

	// One connection at a time, so the second request reuses the first's.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 5 * time.Second}
	get := func(path string) (status int, closes bool, reused bool) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Close, reused
	}

	if status, closes, _ := get("/readyz"); status != http.StatusOK || closes {
		t.Fatalf("before the drain: /readyz %d, Connection: close %v; want 200 on a kept connection", status, closes)
	}
	cancel()
	start := time.Now()
	// The context ends asynchronously for the listener's goroutines only;
	// the handlers read it directly, so the next request already drains.
	if status, closes, reused := get("/healthz"); status != http.StatusOK || !closes || !reused {
		t.Errorf("draining: /healthz %d, Connection: close %v, on the kept connection %v; want 200, true, true", status, closes, reused)
	}
	if status, closes, _ := get("/readyz"); status != http.StatusServiceUnavailable || !closes {
		t.Errorf("draining: /readyz %d, Connection: close %v; want 503, true", status, closes)
	}

	waitFor(t, drain+5*time.Second, "the listener closed after the drain", func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return errors.New("still accepting")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		return nil
	})
	if took := time.Since(start); took < drain-100*time.Millisecond {
		t.Errorf("listener closed %s after its context ended, before the %s drain", took, drain)
	}
	if err := g.Wait(); err != nil {
		t.Errorf("listener: %v", err)
	}
}
