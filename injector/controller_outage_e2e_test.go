package injector_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestSecretControllerOutlivesASecretListOutage: the apiserver answers 503
// to every Secret list for longer than a controller's CacheSyncTimeout
// (2 minutes in serve; 1 s here) right as the manager starts. The bootstrap
// Secret controller must wait for its informer for as long as that takes,
// not give up on it: that ended serve, on every replica starting in that
// window.
func TestSecretControllerOutlivesASecretListOutage(t *testing.T) {
	mgr, outage, refused := secretListOutageManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	// The outage lasts 4 s (four CacheSyncTimeouts) from the first refused
	// list, however long the manager takes to start its informer on a
	// loaded machine: a fixed 4 s from Start could end before the first
	// list, and the test then proved nothing.
	for deadline := time.Now().Add(30 * time.Second); refused.Load() == 0; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the manager stopped before its first Secret list: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no Secret list was refused within 30 s: the test proves nothing")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the manager stopped during a 4 s Secret list outage: %v", err)
	case <-time.After(4 * time.Second):
	}
	outage.Store(false)
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		t.Fatal("the caches did not sync once the outage ended")
	}
	select {
	case err := <-done:
		t.Fatalf("the manager stopped after the outage: %v", err)
	case <-time.After(2 * time.Second):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("manager: %v", err)
	}
}

// TestSecretControllerStopsDuringASecretListOutage: a replica asked to stop
// while every Secret list still fails (the outage, or Secrets it may not
// list) stops: the manager returns once its context ends, as serve's
// shutdown waits for it.
func TestSecretControllerStopsDuringASecretListOutage(t *testing.T) {
	mgr, _, refused := secretListOutageManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); refused.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no Secret list was refused within 30 s: the test proves nothing")
		}
	}
	time.Sleep(2 * time.Second) // past CacheSyncTimeout
	cancel()
	select {
	case <-done:
	case <-time.After(settleWithin): // a hang guard: the bug was a manager that never stopped
		t.Fatalf("the manager did not stop within %s of its context's end during a Secret list outage", settleWithin)
	}
}

// secretListOutageManager is a manager, not started, running the bootstrap
// Secret controller (CacheSyncTimeout 1 s) through a client whose Secret
// lists and watches are answered 503 while outage is set (it is), counting
// them in refused.
func secretListOutageManager(t *testing.T) (manager.Manager, *atomic.Bool, *atomic.Int32) {
	t.Helper()
	env := startCoreEnv(t)
	outage, refused := new(atomic.Bool), new(atomic.Int32)
	outage.Store(true)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return promhttp.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if outage.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/secrets") {
				refused.Add(1)
				return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
					Header: http.Header{"Content-Type": {"text/plain"}}, Body: http.NoBody, Request: r}, nil
			}
			return rt.RoundTrip(r)
		})
	})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: env.Client.Scheme(), Logger: testr.New(t), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{ByObject: injector.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true), CacheSyncTimeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: meshName, Logger: testr.New(t)}); err != nil {
		t.Fatal(err)
	}
	return mgr, outage, refused
}
