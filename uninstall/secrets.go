package uninstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/retry"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

var (
	secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")
	podsGVR    = corev1.SchemeGroupVersion.WithResource("pods")
)

// handOver is what the uninstall does with one bootstrap Secret.
type handOver int

const (
	// leaveSecret: not the mesh's bootstrap Secret, being deleted already,
	// or already owned by its pod (FSM's controller, older versions of ours).
	leaveSecret handOver = iota
	// ownByPod: its pod runs; the garbage collector deletes the Secret
	// with it once the pod is owner, since no injector is left to.
	ownByPod
	// deleteOrphan: its pod is gone; nothing will ever read it.
	deleteOrphan
)

func (h handOver) String() string {
	switch h {
	case leaveSecret:
		return "leave"
	case ownByPod:
		return "own by pod"
	case deleteOrphan:
		return "delete"
	}
	return fmt.Sprintf("handOver(%d)", int(h))
}

// decideHandOver decides what becomes of mesh's bootstrap Secret now that
// the injector's controller (which deletes it when its pod goes) is gone;
// pods are the pods that need it (the one carrying its uuid, those mounting
// it), none when there is none.
func decideHandOver(secret metav1.Object, mesh string, pods []*metav1.PartialObjectMetadata) handOver {
	l := secret.GetLabels()
	id := l[injector.ProxyUUIDLabel]
	if !injector.BootstrapSecretSelector(mesh).Matches(labels.Set(l)) || secret.GetName() != fsmnames.BootstrapSecretName(id) || secret.GetDeletionTimestamp() != nil {
		return leaveSecret
	}
	if len(pods) == 0 {
		return deleteOrphan
	}
	if len(missingOwners(secret, pods)) == 0 {
		return leaveSecret
	}
	return ownByPod
}

// missingOwners are the owner references of the pods that secret does not
// name as owners yet. Each pod that needs the Secret owns it: the garbage
// collector deletes a dependent only once all its owners are gone, so a
// Secret owned by one of two pods mounting it went with that one while the
// other still mounted it.
func missingOwners(secret metav1.Object, pods []*metav1.PartialObjectMetadata) []metav1.OwnerReference {
	var missing []metav1.OwnerReference
	for _, p := range pods {
		owned := slices.ContainsFunc(secret.GetOwnerReferences(), func(o metav1.OwnerReference) bool { return o.UID == p.UID })
		listed := slices.ContainsFunc(missing, func(o metav1.OwnerReference) bool { return o.UID == p.UID })
		if !owned && !listed {
			missing = append(missing, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID})
		}
	}
	return missing
}

// handOverBootstrapSecrets gives every bootstrap Secret of mesh left in the
// cluster to the garbage collector (its pods as owners: the one carrying its
// uuid, else the one mounting it, and any pod without a uuid label mounting
// it too; one write per running meshed pod, at uninstall only) or deletes
// it when its pod is gone. It runs
// once the servers are stopped, so no controller deletes and no admission
// creates Secrets meanwhile. Every write carries the resourceVersion (patch)
// or UID and resourceVersion (delete) it was decided on; a conflict re-reads
// and re-decides. Secrets are read as metadata only: the hook never holds a private
// key. It goes through every Secret and reports all failures.
func handOverBootstrapSecrets(ctx context.Context, cs kubernetes.Interface, meta metadata.Interface, mesh string, log logr.Logger) error {
	pods := map[types.NamespacedName]*metav1.PartialObjectMetadata{} // by namespace and uuid
	// A uuid two pods carry: one of them was relabelled with the other's,
	// and only the volumes tell which one mounts its Secret. Owned by the
	// other, the Secret would go with that pod while its own still runs.
	shared := map[types.NamespacedName]bool{}
	err := listAll(ctx, meta, podsGVR, injector.ProxyUUIDLabel, func(p *metav1.PartialObjectMetadata) {
		key := types.NamespacedName{Namespace: p.Namespace, Name: p.Labels[injector.ProxyUUIDLabel]}
		if _, ok := pods[key]; ok {
			shared[key] = true
		}
		pods[key] = p
	})
	if err != nil {
		return err
	}
	var secrets []*metav1.PartialObjectMetadata
	if err := listAll(ctx, meta, secretsGVR, injector.BootstrapSecretSelector(mesh).String(), func(s *metav1.PartialObjectMetadata) {
		secrets = append(secrets, s)
	}); err != nil {
		return err
	}
	mounts := newMountIndex(cs.CoreV1(), "")
	// A copy made of a meshed pod (kubectl debug --copy-to drops the
	// labels) or a pod whose uuid label was removed may mount a Secret
	// whose own pod runs too: it must own the Secret as well. One list of
	// such pods per namespace (in a meshed namespace, few).
	unlabelled := newMountIndex(cs.CoreV1(), "!"+injector.ProxyUUIDLabel)
	var (
		mu     sync.Mutex
		counts = map[handOver]int{}
		errs   []error
		g      errgroup.Group
	)
	// handOverWorkers Secrets at once: each takes a write round trip (and
	// an orphan a list first), and the hook has --timeout (the chart's
	// default 120 s, its Job 60 s more, retries included) for all of them.
	// One at a time, 50,000 meshed pods needed 2.4 ms a write to fit; at an
	// apiserver's usual 5-20 ms the hook failed with most Secrets left
	// without an owner, and a Secret left so outlives its pod forever.
	g.SetLimit(handOverWorkers)
	for _, s := range secrets {
		key := types.NamespacedName{Namespace: s.Namespace, Name: s.Labels[injector.ProxyUUIDLabel]}
		carrier := pods[key]
		g.Go(func() error {
			var done handOver
			needing, err := podsNeeding(ctx, mounts, unlabelled, s, carrier, shared[key])
			if err == nil {
				done, err = settleSecret(ctx, meta, mounts, mesh, s, needing)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			counts[done]++
			return nil
		})
	}
	_ = g.Wait()
	log.Info("Bootstrap Secrets handed over", "ownedByTheirPod", counts[ownByPod], "deleted", counts[deleteOrphan], "leftAlone", counts[leaveSecret], "failed", len(errs))
	return errors.Join(errs...)
}

// podsNeeding are the pods that need bootstrap Secret s, as far as the list
// of meshed pods shows: carrier (nil: none), the pod carrying its uuid, or,
// when two pods carry it (shared: one relabelled with the other's), those
// mounting it; and the pods without a uuid label mounting it. None when no
// pod carries its uuid: settleSecret looks again before deleting it.
func podsNeeding(ctx context.Context, mounts, unlabelled *mountIndex, s, carrier *metav1.PartialObjectMetadata, shared bool) ([]*metav1.PartialObjectMetadata, error) {
	if carrier == nil {
		return nil, nil
	}
	needing := []*metav1.PartialObjectMetadata{carrier}
	if shared {
		m, err := mounts.pods(ctx, s.Namespace, s.Name)
		if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			needing = m
		}
	}
	m, err := unlabelled.pods(ctx, s.Namespace, s.Name)
	if err != nil {
		return nil, err
	}
	return append(needing, m...), nil
}

// handOverWorkers is how many Secrets the hand-over settles at once.
const handOverWorkers = 16

// orphanGrace is how long after its creation a bootstrap Secret may still
// get its pod (injector.DefaultOrphanGracePeriod; a variable for tests).
var orphanGrace = injector.DefaultOrphanGracePeriod

// orphanWait is how long a Secret whose pod is not in the API must still
// wait before it is known to be an orphan: none once orphanGrace has passed
// since its creation (by the apiserver's clock, as the injector's
// controller measures it).
func orphanWait(secret metav1.Object, now time.Time) time.Duration {
	return secret.GetCreationTimestamp().Add(orphanGrace).Sub(now)
}

// settleSecret applies decideHandOver to one Secret and the pods needing it,
// re-reading it after a conflict, and returns what it did.
func settleSecret(ctx context.Context, meta metadata.Interface, mounts *mountIndex, mesh string, s *metav1.PartialObjectMetadata, pods []*metav1.PartialObjectMetadata) (handOver, error) {
	secrets := meta.Resource(secretsGVR).Namespace(s.Namespace)
	id := s.Labels[injector.ProxyUUIDLabel]
	var done handOver
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			var err error
			if s, err = secrets.Get(ctx, s.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		first = false
		done = decideHandOver(s, mesh, pods)
		if done == deleteOrphan {
			// Its pod may not be stored yet: the Secret is written inside
			// the pod's create request, which later webhooks can hold for
			// up to 34 s after ours answered, up to the moment our last
			// server stopped. Deleted now, such a pod waits forever for its
			// Secret volume, and no injector is left to rebuild it: wait as
			// the injector's controller does before it deletes an orphan.
			if d := orphanWait(s, time.Now()); d > 0 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("waiting %s for the pod of a bootstrap Secret created at %s: %w", d.Round(time.Second), s.CreationTimestamp.UTC().Format(time.RFC3339), ctx.Err())
				case <-time.After(d):
				}
			}
			// The list of pods is older than this Secret's read: ask again.
			live, err := podWithUUID(ctx, meta, s.Namespace, id)
			if err != nil {
				return err
			}
			// A pod whose uuid label was removed or changed (kubectl
			// label, a GitOps tool) still mounts it, as the injector's
			// controller, which never sweeps such a Secret, knows:
			// deleted, the pod could not start again (a node reboot) and
			// nothing is left to rebuild it.
			mounting, err := mounts.pods(ctx, s.Namespace, s.Name)
			if err != nil {
				return err
			}
			if live != nil {
				mounting = append(mounting, live)
			}
			pods = mounting
			done = decideHandOver(s, mesh, pods)
		}
		switch done {
		case ownByPod:
			owners := append(append([]metav1.OwnerReference(nil), s.OwnerReferences...), missingOwners(s, pods)...)
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": s.ResourceVersion, "ownerReferences": owners}})
			if err != nil {
				return err
			}
			_, err = secrets.Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		case deleteOrphan:
			uid, rv := s.UID, s.ResourceVersion
			return secrets.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		}
		return nil
	})
	switch {
	case apierrors.IsNotFound(err):
		return leaveSecret, nil // gone meanwhile (the garbage collector, an earlier try of this hook)
	case err != nil && done == ownByPod:
		return done, fmt.Errorf("setting pods %s of namespace %s as owners of bootstrap Secret %s: %w", podNames(pods), s.Namespace, s.Name, err)
	case err != nil:
		return done, fmt.Errorf("bootstrap Secret %s/%s (%s): %w", s.Namespace, s.Name, done, err)
	}
	return done, nil
}

// podNames lists the names of pods, for messages.
func podNames(pods []*metav1.PartialObjectMetadata) string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// mountIndex finds the pods that mount a bootstrap Secret as their
// bootstrap volume, whatever their uuid label, among the pods its selector
// selects (all with ""): listed once per namespace, and only for a
// namespace it is asked about. Full pods: the volumes are not in the
// metadata. Each namespace has its own lock, so the hand-over's workers
// list different namespaces at once (one lock for all made every other
// lookup wait for each namespace's list in turn).
type mountIndex struct {
	client      corev1client.PodsGetter
	selector    string
	mu          sync.Mutex // guards byNamespace, not the lists
	byNamespace map[string]*namespaceMounts
}

// namespaceMounts is one namespace's part of a mountIndex.
type namespaceMounts struct {
	mu       sync.Mutex // held while the namespace is listed
	listed   bool
	bySecret map[string][]*metav1.PartialObjectMetadata // Secret name → pods mounting it
}

func newMountIndex(pods corev1client.PodsGetter, selector string) *mountIndex {
	return &mountIndex{client: pods, selector: selector, byNamespace: map[string]*namespaceMounts{}}
}

// pods are the pods of namespace whose bootstrap volume is Secret secret.
func (m *mountIndex) pods(ctx context.Context, namespace, secret string) ([]*metav1.PartialObjectMetadata, error) {
	m.mu.Lock()
	n, ok := m.byNamespace[namespace]
	if !ok {
		n = &namespaceMounts{}
		m.byNamespace[namespace] = n
	}
	m.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.listed {
		bySecret, err := m.list(ctx, namespace)
		if err != nil {
			return nil, fmt.Errorf("listing pods in %s for those mounting bootstrap Secret %s: %w", namespace, secret, err)
		}
		n.bySecret, n.listed = bySecret, true
	}
	return n.bySecret[secret], nil
}

// list indexes the selected pods of namespace by the Secret their
// bootstrap volume names.
func (m *mountIndex) list(ctx context.Context, namespace string) (map[string][]*metav1.PartialObjectMetadata, error) {
	bySecret := map[string][]*metav1.PartialObjectMetadata{}
	opts := metav1.ListOptions{LabelSelector: m.selector, Limit: 500}
	for {
		l, err := m.client.Pods(namespace).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			p := &l.Items[i]
			for _, v := range p.Spec.Volumes {
				if v.Name == injector.BootstrapVolumeName && v.Secret != nil {
					bySecret[v.Secret.SecretName] = append(bySecret[v.Secret.SecretName], &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID}})
				}
			}
		}
		if l.Continue == "" {
			return bySecret, nil
		}
		opts.Continue = l.Continue
	}
}

// podWithUUID is the pod of namespace labelled with proxy uuid id, or nil.
func podWithUUID(ctx context.Context, meta metadata.Interface, namespace, id string) (*metav1.PartialObjectMetadata, error) {
	l, err := meta.Resource(podsGVR).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: injector.ProxyUUIDLabel + "=" + id, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("listing pods with %s=%s in %s: %w", injector.ProxyUUIDLabel, id, namespace, err)
	}
	if len(l.Items) == 0 {
		return nil, nil
	}
	return &l.Items[0], nil
}

// listAll lists gvr's objects of every namespace matching selector, 500 per
// page, and hands each to f.
func listAll(ctx context.Context, meta metadata.Interface, gvr schema.GroupVersionResource, selector string, f func(*metav1.PartialObjectMetadata)) error {
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		l, err := meta.Resource(gvr).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing %s with %s: %w", gvr.Resource, selector, err)
		}
		for i := range l.Items {
			f(&l.Items[i])
		}
		if l.Continue == "" {
			return nil
		}
		opts.Continue = l.Continue
	}
}
