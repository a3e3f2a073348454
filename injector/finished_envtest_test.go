package injector

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestFinishedPodsAndTheRepair: through the real apiserver, the finished
// pods' cache (a field selector on status.phase) holds a meshed pod once its
// phase is Succeeded, never a Running one; and the writer's repair of a
// finished pod whose Secret is gone (deleted by the cleanup) writes nothing:
// with the cache (as serve wires it) without a single API read, at every
// replica start for every such pod; without it, after reading the pod and
// finding its phase.
func TestFinishedPodsAndTheRepair(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: testScheme(t)}})
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: testScheme(t), Logger: testr.New(t), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{ByObject: CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := indexPodsByUUID(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	finished, err := NewFinishedPods(mgr)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := mgr.Start(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped })

	if err := env.Client.Create(ctx, monitoredNamespace("app", nil)); err != nil {
		t.Fatal(err)
	}
	pods := map[corev1.PodPhase]*corev1.Pod{}
	for phase, id := range map[corev1.PodPhase]string{corev1.PodSucceeded: "00000000-0000-4000-8000-0000000000d1", corev1.PodRunning: "00000000-0000-4000-8000-0000000000d2"} {
		mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
		if err != nil {
			t.Fatal(err)
		}
		p := mut.Pod
		p.Name = "p-" + id[len(id)-2:]
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
		pods[phase] = p
	}
	done, live := pods[corev1.PodSucceeded], pods[corev1.PodRunning]
	deadline := time.Now().Add(30 * time.Second)
	for !finished.has(ctx, "app", done.Labels[ProxyUUIDLabel], done.UID) {
		if time.Now().After(deadline) {
			t.Fatalf("the finished pods' cache never had Succeeded pod %s", done.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if finished.has(ctx, "app", live.Labels[ProxyUUIDLabel], live.UID) {
		t.Errorf("the finished pods' cache has Running pod %s", live.Name)
	}
	if finished.has(ctx, "app", done.Labels[ProxyUUIDLabel], live.UID) {
		t.Error("the finished pods' cache has the finished pod's uuid under another pod's uid")
	}
	// The writer's pod cache must have the pod, as at a replica start.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p, err := cachedPodWithUUID(ctx, mgr.GetClient(), "app", done.Labels[ProxyUUIDLabel])
		if err != nil {
			t.Fatal(err)
		}
		if p != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod cache never had the pod")
		}
	}

	for _, tc := range []struct {
		name      string
		finished  *FinishedPods
		wantReads int32
	}{
		{"with the finished pods' cache: nothing read", finished, 0},
		{"without it: the Secret looked for, the pod read, its phase stops the repair", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reads atomic.Int32
			ww, err := client.NewWithWatch(env.Config, client.Options{Scheme: testScheme(t)})
			if err != nil {
				t.Fatal(err)
			}
			direct := interceptor.NewClient(ww, interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					reads.Add(1)
					return c.Get(ctx, key, obj, opts...)
				},
			})
			issuer := &recordingIssuer{}
			h, err := NewHandler(Options{Client: direct, Namespaces: mgr.GetClient(), Issuer: issuer, MeshConfig: StaticSettings(DefaultSettings()),
				MeshName: "fsm", FSMNamespace: "fsm-system"})
			if err != nil {
				t.Fatal(err)
			}
			w := &secretWriter{cache: mgr.GetClient(), h: h, repairDelay: DefaultRepairDelay, finished: tc.finished, log: testr.New(t), now: time.Now}
			key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(done.Labels[ProxyUUIDLabel])}
			if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if got := reads.Load(); got != tc.wantReads {
				t.Errorf("the repair of a finished pod made %d read(s) from the API server; want %d", got, tc.wantReads)
			}
			if err := env.Client.Get(ctx, key, &corev1.Secret{}); !apierrors.IsNotFound(err) {
				t.Errorf("Secret %s of finished pod %s: %v, want none written", key, done.Name, err)
			}
			if len(issuer.cns) != 0 {
				t.Errorf("certificates issued for %q, want none", issuer.cns)
			}
		})
	}
}
