package injector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testSecretFollowsPod: through the real apiserver (no garbage collector
// runs in envtest, so every delete seen here is the controller's), a meshed
// pod's Secret lives as long as the pod without ever getting an owner
// reference from us, and goes within seconds of the pod's deletion, long
// after its grace period ended (so only the pod's DELETE event can have
// triggered it). A Secret FSM's controller made owned by its pod (a plain
// Update appending the owner) goes the same way.
func (e *e2e) testSecretFollowsPod(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "secretlife", true)
	plain, fsmOwned := pod("plain", ns), pod("fsm-owned", ns)
	plain.Labels, plain.Annotations = map[string]string{"app": "web"}, map[string]string{"example.com/note": "not cached"}
	for _, p := range []*corev1.Pod{plain, fsmOwned} {
		if err := e.cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	secretOf := func(p *corev1.Pod) client.ObjectKey {
		return client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
	}
	// What FSM's WatchAndUpdateProxyBootstrapSecret does when the pod appears.
	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, secretOf(fsmOwned), s); err != nil {
		t.Fatal(err)
	}
	s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: fsmOwned.Name, UID: fsmOwned.UID})
	if err := e.cl.Update(ctx, s); err != nil {
		t.Fatal(err)
	}

	// Past the grace period the controller has looked at both Secrets, found
	// their pods, and written nothing.
	time.Sleep(orphanGrace + 2*time.Second)
	for p, wantOwners := range map[*corev1.Pod]int{plain: 0, fsmOwned: 1} {
		s := &corev1.Secret{}
		if err := e.cl.Get(ctx, secretOf(p), s); err != nil {
			t.Fatalf("Secret of live pod %s: %v", p.Name, err)
		}
		if len(s.OwnerReferences) != wantOwners {
			t.Errorf("Secret of pod %s has owners %+v, want %d (the controller writes none)", p.Name, s.OwnerReferences, wantOwners)
		}
	}

	// The manager's cache keeps of them only what the controllers read: the
	// owner FSM's controller appended is stored, not cached, nor are the
	// pods' annotations and other labels.
	var cachedSecret *metav1.PartialObjectMetadata
	eventually(t, settleWithin, "the cache to have the Secret FSM's controller updated", func() (bool, error) {
		cachedSecret = &metav1.PartialObjectMetadata{}
		cachedSecret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := e.cache.Get(ctx, secretOf(fsmOwned), cachedSecret); err != nil {
			return false, err
		}
		return cachedSecret.ResourceVersion == s.ResourceVersion, nil
	})
	if len(cachedSecret.OwnerReferences) != 0 || len(cachedSecret.Annotations) != 0 || len(cachedSecret.Labels) != 3 ||
		cachedSecret.Labels[injector.ProxyUUIDLabel] != fsmOwned.Labels[injector.ProxyUUIDLabel] || cachedSecret.CreationTimestamp.IsZero() {
		t.Errorf("cached Secret metadata %+v: want its name, uid, resourceVersion, creationTimestamp and three labels only", cachedSecret.ObjectMeta)
	}
	cachedPod := &metav1.PartialObjectMetadata{}
	cachedPod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := e.cache.Get(ctx, client.ObjectKeyFromObject(plain), cachedPod); err != nil {
		t.Fatal(err)
	}
	if plain.Labels["app"] != "web" || plain.Labels[injector.ProxyUUIDLabel] == "" {
		t.Fatalf("stored pod %s has labels %v", plain.Name, plain.Labels)
	}
	if len(cachedPod.Annotations) != 0 || len(cachedPod.Labels) != 1 || cachedPod.UID != plain.UID {
		t.Errorf("cached pod metadata %+v: want its name, uid and uuid label only", cachedPod.ObjectMeta)
	}
	// The uuid index finds it within its namespace, through the cache as
	// the handler and the controllers look, and holds no cluster-wide key.
	id := plain.Labels[injector.ProxyUUIDLabel]
	found := &metav1.PartialObjectMetadataList{}
	found.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := e.cache.List(ctx, found, client.InNamespace(ns), client.MatchingFields{injector.PodUUIDIndex: id}); err != nil {
		t.Fatal(err)
	}
	if len(found.Items) != 1 || found.Items[0].UID != plain.UID {
		t.Errorf("pods with uuid %s in %s through the cache's index: %d, want pod %s", id, ns, len(found.Items), plain.Name)
	}
	informer, err := e.cache.GetInformer(ctx, cachedPod)
	if err != nil {
		t.Fatal(err)
	}
	indexer := informer.(interface{ GetIndexer() toolscache.Indexer }).GetIndexer()
	for key, want := range map[string]int{ns + "/" + id: 1, "__all_namespaces/" + id: 0} {
		if keys, err := indexer.IndexKeys(injector.PodUUIDIndexName, key); err != nil || len(keys) != want {
			t.Errorf("index %s key %s: %q, %v; want %d pod(s)", injector.PodUUIDIndexName, key, keys, err, want)
		}
	}

	before := deletedTotal(t, injector.ReasonPodDeleted)
	for _, p := range []*corev1.Pod{plain, fsmOwned} {
		// Unscheduled: the apiserver removes it at once.
		start := time.Now()
		if err := e.cl.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: ptr.To(p.UID)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, settleWithin, "the Secret of deleted pod "+p.Name+" to go", func() (bool, error) {
			err := e.cl.Get(ctx, secretOf(p), &corev1.Secret{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		t.Logf("pod %s deleted -> its Secret gone in %s", p.Name, time.Since(start).Round(time.Millisecond))
	}
	// The reconciler counts a delete once its call returns, which may be
	// after the test saw the Secret gone.
	var d float64
	eventually(t, settleWithin, "both deletes to be counted", func() (bool, error) {
		d = deletedTotal(t, injector.ReasonPodDeleted) - before
		return d >= 2, nil
	})
	if d != 2 {
		t.Errorf("fsm_webhooks_injector_orphan_secrets_deleted_total{reason=%q} went up by %v, want 2", injector.ReasonPodDeleted, d)
	}
}

// deletedTotal reads fsm_webhooks_injector_orphan_secrets_deleted_total of
// reason from the registry the manager serves.
func deletedTotal(t *testing.T, reason string) float64 {
	t.Helper()
	n, ok := counterSum(t, "fsm_webhooks_injector_orphan_secrets_deleted_total", map[string]string{"reason": reason})
	if !ok {
		t.Fatalf("no fsm_webhooks_injector_orphan_secrets_deleted_total{reason=%q}", reason)
	}
	return n
}

// testSecretOfRelabelledPod: the controller's pod watch selects pods with the
// uuid label, so removing it from a live pod makes the apiserver report the
// pod DELETED (with its old labels, no deletionTimestamp). The Secret the pod
// still mounts is kept: at that report (the API server, asked by name, has
// the same pod), and at later sweeps past the grace period (a Secret's update
// reconciles it as a restart does), for a removed label and for a changed
// one alike. Once such a pod is really deleted no DELETE event comes (it had
// left the watch): the next sweep deletes its Secret.
func (e *e2e) testSecretOfRelabelledPod(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "relabel", true)
	removed, changed := pod("removed", ns), pod("changed", ns)
	keys := map[*corev1.Pod]client.ObjectKey{}
	for _, p := range []*corev1.Pod{removed, changed} {
		if err := e.cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		keys[p] = client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
	}
	// Someone (a tool, kubectl label --overwrite) edits the labels.
	for p, label := range map[*corev1.Pod]string{removed: "null", changed: `"not-its-uuid"`} {
		patch := []byte(`{"metadata":{"labels":{"` + injector.ProxyUUIDLabel + `":` + label + `}}}`)
		if err := e.cl.Patch(ctx, p, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
	}
	// touch updates both Secrets, which has the controller reconcile them.
	touch := func(n int) {
		t.Helper()
		for _, key := range keys {
			patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"example.com/touched":"%d"}}}`, n))
			if err := e.cl.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(orphanGrace + 2*time.Second)
	touch(1)
	time.Sleep(2 * time.Second)
	for p, key := range keys {
		if err := e.cl.Get(ctx, key, &corev1.Secret{}); err != nil {
			t.Fatalf("bootstrap Secret of running pod %s (uuid label edited), past the grace period and swept: %v", p.Name, err)
		}
	}

	before := deletedTotal(t, injector.ReasonNoPod)
	for p := range keys {
		if err := e.cl.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	touch(2)
	for p, key := range keys {
		eventually(t, settleWithin, "the Secret of deleted pod "+p.Name+" to go at the next sweep", func() (bool, error) {
			err := e.cl.Get(ctx, key, &corev1.Secret{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
	}
	eventually(t, settleWithin, "both deletes to be counted", func() (bool, error) {
		return deletedTotal(t, injector.ReasonNoPod)-before >= 2, nil
	})
}
