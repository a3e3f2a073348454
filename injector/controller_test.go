package injector

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestSecretReconciler: a bootstrap Secret is owned by its pod as soon as
// either the cache or the API server has the pod, and deleted only once the
// default grace period (1 min) has passed and the API server has no pod with
// its uuid; Secrets already owned, or another mesh's, are left alone.
func TestSecretReconciler(t *testing.T) {
	created := time.Unix(1e9, 0)
	secret := func(mutate ...func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: "app", Name: BootstrapSecretName("u1"), UID: "secret-uid",
			CreationTimestamp: metav1.NewTime(created),
			Labels:            map[string]string{appNameLabel: appNameValue, appInstanceLabel: "fsm", ProxyUUIDLabel: "u1"},
		}}
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	livePod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-x1", UID: "pod-uid", Labels: map[string]string{ProxyUUIDLabel: "u1"}}}
	owned := func(s *corev1.Secret) {
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "gone", UID: "gone-uid"}}
	}
	otherMesh := func(s *corev1.Secret) { s.Labels[appInstanceLabel] = "other" }

	for _, tc := range []struct {
		name       string
		secret     *corev1.Secret
		cachedPod  bool // the pod is in the cache
		livePod    bool // the pod is on the API server
		age        time.Duration
		wantOwner  types.UID // "" = no owner added
		wantGone   bool
		wantRequeu time.Duration
	}{
		{name: "young, no pod yet: wait for the rest of the grace period", secret: secret(), age: 20 * time.Second, wantRequeu: 41 * time.Second},
		{name: "pod in the cache: owned at once", secret: secret(), cachedPod: true, livePod: true, wantOwner: "pod-uid"},
		{name: "grace over, pod only on the API server (cache lags): owned", secret: secret(), livePod: true, age: 2 * time.Minute, wantOwner: "pod-uid"},
		{name: "grace over, no pod: deleted", secret: secret(), age: DefaultOrphanGracePeriod, wantGone: true},
		{name: "just inside the grace period: kept", secret: secret(), age: DefaultOrphanGracePeriod - time.Second, wantRequeu: 2 * time.Second},
		{name: "owned (by us or FSM's controller): the garbage collector's", secret: secret(owned), age: time.Hour},
		{name: "another mesh's Secret", secret: secret(otherMesh), age: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testScheme(t)
			objs := []client.Object{tc.secret}
			cached := fake.NewClientBuilder().WithScheme(s).WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string {
				return []string{o.GetLabels()[ProxyUUIDLabel]}
			})
			live := fake.NewClientBuilder().WithScheme(s)
			if tc.cachedPod {
				objs = append(objs, livePod.DeepCopy())
			}
			cl := cached.WithObjects(objs...).Build()
			if tc.livePod {
				live = live.WithObjects(livePod.DeepCopy())
			}
			r := &secretReconciler{client: cl, live: live.Build(), now: func() time.Time { return created.Add(tc.age) },
				opts: SecretControllerOptions{MeshName: "fsm", GracePeriod: DefaultOrphanGracePeriod, Logger: testr.New(t)}}
			deletedBefore := testutil.ToFloat64(orphansDeleted)

			res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(tc.secret)})
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfter != tc.wantRequeu {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.wantRequeu)
			}
			got := &corev1.Secret{}
			err = cl.Get(context.Background(), client.ObjectKeyFromObject(tc.secret), got)
			if gone := apierrors.IsNotFound(err); gone != tc.wantGone {
				t.Fatalf("Secret deleted = %v (%v), want %v", gone, err, tc.wantGone)
			}
			if d := testutil.ToFloat64(orphansDeleted) - deletedBefore; (d == 1) != tc.wantGone {
				t.Errorf("fsm_webhooks_injector_orphan_secrets_deleted_total went up by %v", d)
			}
			if tc.wantGone {
				return
			}
			var added types.UID
			for _, o := range got.OwnerReferences {
				if o.UID != "gone-uid" {
					added = o.UID
				}
			}
			if added != tc.wantOwner {
				t.Errorf("owner added %q, want %q (owners %+v)", added, tc.wantOwner, got.OwnerReferences)
			}
		})
	}
}
