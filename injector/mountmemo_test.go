package injector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestMountMemoForgetsDeletedPods: the orphan sweep learns from the API
// server what a cached meshed pod without a readable Secret of its own
// mounts (mounted), and forgot it only at a later sweep of the same
// namespace that found no mount. A namespace deleted (CI creates and
// deletes thousands) has no later sweep: each such pod's entry, and the
// namespace's map, stayed until the process restarted. The pod informer
// reports every deletion, and the entry goes with it.
func TestMountMemoForgetsDeletedPods(t *testing.T) {
	const n = 20
	s := testScheme(t)
	ctx := context.Background()
	var cachedObjs, liveObjs []client.Object
	var pods []*corev1.Pod
	var orphans []types.NamespacedName
	for i := range n {
		ns := fmt.Sprintf("ci-%d", i)
		// A meshed pod whose own Secret neither the cache nor the API
		// server has (its write still under way, or NodeLevel: none).
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", UID: types.UID("uid-" + ns),
			Labels: map[string]string{ProxyUUIDLabel: "p-" + ns}}}
		orphan := bootstrapSecret(func(s *corev1.Secret) {
			s.Namespace, s.Name, s.UID = ns, BootstrapSecretName("o-"+ns), types.UID("secret-"+ns)
			s.Labels[ProxyUUIDLabel] = "o-" + ns
		})
		cachedObjs = append(cachedObjs, p.DeepCopy(), orphan)
		liveObjs = append(liveObjs, p.DeepCopy())
		pods = append(pods, p)
		orphans = append(orphans, client.ObjectKeyFromObject(orphan))
	}
	cached := fake.NewClientBuilder().WithScheme(s).WithObjects(cachedObjs...).
		WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).Build()
	live := fake.NewClientBuilder().WithScheme(s).WithObjects(liveObjs...).Build()
	r := newSecretReconciler(cached, live, SecretControllerOptions{MeshName: "fsm", GracePeriod: DefaultOrphanGracePeriod, Logger: testr.New(t)})
	r.now = func() time.Time { return secretCreated.Add(time.Hour) }

	for _, key := range orphans {
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
		if err := cached.Get(ctx, key, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Fatalf("orphan %s not deleted: %v", key, err)
		}
	}
	if got := mountMemoSize(r); got != n {
		t.Fatalf("after the sweeps the memo holds %d pod(s), want %d (one learnt per namespace)", got, n)
	}

	// The namespaces are deleted, and their pods with them.
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	for _, p := range pods {
		gone := p.DeepCopy()
		gone.DeletionTimestamp = &metav1.Time{Time: secretCreated}
		r.podDeleted(ctx, event.DeleteEvent{Object: gone}, q)
	}
	for q.Len() > 0 {
		req, _ := q.Get()
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		q.Done(req)
	}
	if got, namespaces := mountMemoSize(r), len(r.mounted); got != 0 || namespaces != 0 {
		t.Errorf("after every pod was deleted the memo still holds %d pod(s) in %d namespace(s), want none", got, namespaces)
	}
	if len(r.deleted) != 0 {
		t.Errorf("%d pod deletion(s) still remembered", len(r.deleted))
	}
}

func mountMemoSize(r *secretReconciler) int {
	r.mountedMu.Lock()
	defer r.mountedMu.Unlock()
	n := 0
	for _, m := range r.mounted {
		n += len(m)
	}
	return n
}
