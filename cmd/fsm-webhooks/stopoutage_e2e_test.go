package main

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestServeStopsWhileItsCachesCannotSync: serve is asked to stop while the
// apiserver refuses every Namespace list (an outage as the replica starts,
// or RBAC that forbids it), so the validator's caches, which the controller
// manager waits for before it starts anything else, never sync.
// controller-runtime's manager does not watch its context during that wait,
// and serve waited for the manager: the replica stopped only when SIGKILL
// came, a core spinning meanwhile. serve must return soon after its
// context ends.
func TestServeStopsWhileItsCachesCannotSync(t *testing.T) {
	const ns = "fsm-system"
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var outage atomic.Bool
	outage.Store(true)
	var refused atomic.Int32
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if outage.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/api/v1/namespaces") {
				refused.Add(1)
				return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
					Header: http.Header{"Content-Type": {"text/plain"}}, Body: http.NoBody, Request: r}, nil
			}
			return rt.RoundTrip(r)
		})
	})
	// The outage ends with the test, so a manager left waiting stops.
	t.Cleanup(func() { outage.Store(false) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := serveValidator(ctx, t, cfg, ns, func(o *options) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = 0
	})
	deadline := time.Now().Add(30 * time.Second)
	for refused.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if refused.Load() == 0 {
		t.Fatal("no Namespace list was refused: the test proves nothing")
	}
	time.Sleep(2 * time.Second) // serve well inside the manager's wait
	select {
	case err := <-done:
		t.Fatalf("serve returned before it was asked to stop: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(time.Minute): // a hang guard: serve waited for SIGKILL; managerStopWait is 5 s
		t.Fatal("serve did not return within a minute of its context's end while its caches could not sync")
	}
	// The manager serve left waits on; once its list succeeds it stops,
	// its context being over (and before the apiserver does: stopping
	// under it took a minute).
	outage.Store(false)
	stopped := make(chan struct{})
	go func() { managers.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("the controller manager serve left did not stop within a minute of its caches' list succeeding")
	}
}
