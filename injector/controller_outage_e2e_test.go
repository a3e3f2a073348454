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
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestSecretControllerOutlivesASecretListOutage: the apiserver answers 503
// to every Secret list for longer than a controller's CacheSyncTimeout
// (2 minutes in serve; 1 s here) right as the manager starts. The bootstrap
// Secret controller's informer must be part of the cache the manager waits
// for without a deadline, not one the controller creates when it starts
// and gives up on: that ended serve, on every replica starting in that
// window.
func TestSecretControllerOutlivesASecretListOutage(t *testing.T) {
	env := startCoreEnv(t)
	var outage atomic.Bool
	outage.Store(true)
	var refused atomic.Int32
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	select {
	case err := <-done:
		t.Fatalf("the manager stopped during a 4 s Secret list outage: %v", err)
	case <-time.After(4 * time.Second):
	}
	if refused.Load() == 0 {
		t.Fatal("no Secret list was refused: the test proves nothing")
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
