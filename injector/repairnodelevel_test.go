package injector

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestRepairUnderNodeLevelReadsNothingLive: under NodeLevel interception no
// pod gets a bootstrap Secret (Mutate adds the uuid label only), so every
// meshed pod is, to the writer's caches, a stored pod without its Secret:
// the informer's first list queues each for repair on every replica start,
// and every pod create queues its pod on every replica. A repair then
// cannot write anything (Mutate under NodeLevel needs no Secret), yet it
// read the whole pod from the API server first: 50,000 meshed pods made
// 50,000 GETs per replica start, and each pod create one per replica. With
// the settings NodeLevel the repair stops before any live read; under
// sidecar interception a pod missing its Secret is still read and repaired.
func TestRepairUnderNodeLevelReadsNothingLive(t *testing.T) {
	const id = "00000000-0000-4000-8000-0000000000aa"
	nodeLevel := DefaultSettings()
	nodeLevel.InterceptionMode = InterceptionNodeLevel
	sidecarPod := func(t *testing.T) *corev1.Pod {
		mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
		if err != nil {
			t.Fatal(err)
		}
		return mut.Pod
	}
	labelOnlyPod := func(*testing.T) *corev1.Pod {
		p := simplePod(nil)
		p.Labels = map[string]string{ProxyUUIDLabel: id}
		return p
	}
	for _, tc := range []struct {
		name       string
		pod        func(*testing.T) *corev1.Pod
		settings   Settings
		wantReads  int32
		wantSecret bool
	}{
		{name: "NodeLevel pod, NodeLevel settings", pod: labelOnlyPod, settings: nodeLevel},
		{name: "sidecar pod missing its Secret, NodeLevel settings: nothing to write", pod: sidecarPod, settings: nodeLevel},
		{name: "sidecar pod missing its Secret, sidecar settings: read and repaired", pod: sidecarPod, settings: DefaultSettings(), wantReads: 2, wantSecret: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pod := tc.pod(t).DeepCopy()
			pod.Namespace, pod.Name, pod.UID = "app", "p", "uid-p"
			cached := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace(pod.Namespace, nil), pod).
				WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
				Build()
			var reads atomic.Int32
			direct := interceptor.NewClient(cached, interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					reads.Add(1)
					return c.Get(ctx, key, obj, opts...)
				},
			})
			h, err := NewHandler(Options{Client: direct, Namespaces: cached, Issuer: &recordingIssuer{}, MeshConfig: StaticSettings(tc.settings),
				MeshName: "fsm", FSMNamespace: "fsm-system"})
			if err != nil {
				t.Fatal(err)
			}
			w := &secretWriter{cache: cached, h: h, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
			key := types.NamespacedName{Namespace: pod.Namespace, Name: BootstrapSecretName(id)}
			if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if got := reads.Load(); got != tc.wantReads {
				t.Errorf("repair made %d read(s) from the API server; want %d", got, tc.wantReads)
			}
			err = cached.Get(ctx, key, &corev1.Secret{})
			if got := err == nil; got != tc.wantSecret {
				t.Errorf("Secret %s written: %v (Get: %v); want %v", key, got, err, tc.wantSecret)
			}
		})
	}
}
