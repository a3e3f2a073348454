package injector_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
	cfg := refusing(env.Config, http.StatusServiceUnavailable, refused, func(r *http.Request) bool {
		return outage.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/secrets")
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

// TestDeletionsWhileFinishedPodsCannotList: the finished pods' list (a
// field selector on status.phase) is refused for as long as the replica
// runs (an authorizer or a proxy in front of the apiserver that refuses
// field selectors it does not know), while every other list works. A
// deleted pod's Secret must still go at once: the bootstrap Secret
// controller waited for that informer before starting any worker, so no
// cleanup ran at all, deleted pods' and orphans' included.
func TestDeletionsWhileFinishedPodsCannotList(t *testing.T) {
	env := startCoreEnv(t, "app")
	refused := new(atomic.Int32)
	cfg := refusing(env.Config, http.StatusForbidden, refused, func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods") && strings.Contains(r.URL.Query().Get("fieldSelector"), "status.phase")
	})
	mgr := secretControllerManagerFor(t, cfg, env.Client.Scheme(), injector.SecretControllerOptions{MeshName: meshName, Logger: testr.New(t)})
	ctx, cancel := context.WithCancel(context.Background())
	startManager(ctx, t, mgr, cancel)

	const id = "00000000-0000-4000-8000-0000000000f1"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app", Labels: map[string]string{injector.ProxyUUIDLabel: id}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	secret := testBootstrapSecret("app", id)
	for _, o := range []client.Object{pod, secret} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); refused.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no finished pods' list was refused within 30 s: the test proves nothing")
		}
	}
	// The pod is cached before it is deleted, so its DELETE event reaches
	// the controller.
	eventually(t, settleWithin, "the pod in the manager's cache", func() (bool, error) {
		return mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}) == nil, nil
	})
	if err := env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, settleWithin, "the deleted pod's Secret to go while finished pods cannot be listed", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// TestSecretsOfPodsFinishedBeforeStart: meshed pods that finished (phase
// Succeeded, Failed) before a replica starts lose their Secrets as it
// starts: the finished pods' first list queues them, before that cache
// says it has synced; a pod still running keeps its own.
func TestSecretsOfPodsFinishedBeforeStart(t *testing.T) {
	env := startCoreEnv(t, "app")
	ctx, cancel := context.WithCancel(context.Background())
	ids := map[corev1.PodPhase]string{
		corev1.PodSucceeded: "00000000-0000-4000-8000-0000000000f2",
		corev1.PodFailed:    "00000000-0000-4000-8000-0000000000f3",
		corev1.PodRunning:   "00000000-0000-4000-8000-0000000000f4",
	}
	for phase, id := range ids {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(string(phase)), Namespace: "app", Labels: map[string]string{injector.ProxyUUIDLabel: id}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, testBootstrapSecret("app", id)); err != nil {
			t.Fatal(err)
		}
	}
	startManager(ctx, t, secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, Logger: testr.New(t)}), cancel)
	for _, phase := range []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed} {
		key := client.ObjectKey{Namespace: "app", Name: injector.BootstrapSecretName(ids[phase])}
		eventually(t, settleWithin, "the Secret of the pod "+string(phase)+" before the start to go", func() (bool, error) {
			err := env.Client.Get(ctx, key, &corev1.Secret{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "app", Name: injector.BootstrapSecretName(ids[corev1.PodRunning])}, &corev1.Secret{}); err != nil {
		t.Errorf("the running pod's Secret: %v", err)
	}
}

// testBootstrapSecret is a bootstrap Secret of meshName for uuid id, as the
// controller tells one (labels and name; no data).
func testBootstrapSecret(namespace, id string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: injector.BootstrapSecretName(id), Namespace: namespace,
		Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, injector.ProxyUUIDLabel: id}}}
}

// refusing is cfg with the requests match selects answered with status
// (an empty body), counted in refused.
func refusing(cfg *rest.Config, status int, refused *atomic.Int32, match func(*http.Request) bool) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return promhttp.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if match(r) {
				refused.Add(1)
				return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
					Header: http.Header{"Content-Type": {"text/plain"}}, Body: http.NoBody, Request: r}, nil
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}
