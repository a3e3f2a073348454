package injector

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// FinishedPods is a cache of the meshed pods (those with a proxy uuid label)
// that have finished: phase Succeeded or Failed. The kubelet never starts a
// container of such a pod again, so its bootstrap Secret (a certificate
// valid for years, a count/secrets quota unit, a re-issue at every root
// rotation) has no use left, though the pod object may stay for long: a
// Job's pods without ttlSecondsAfterFinished, a CronJob's kept history,
// pods evicted under node pressure (the terminated-pod GC keeps up to
// 12,500). The manager's pod cache is metadata only and has no phase, and a
// phase read per pod update would cost an API call per status change, so
// the API server selects the finished pods (a field selector on
// status.phase): this cache holds them only, metadata only (a finished
// pod's full object, listed by every replica at each start, would be
// kilobytes), each as its name, uid and uuid label.
type FinishedPods struct {
	cache cache.Cache
}

// finishedSelector selects the pods in a phase no container runs in again:
// Succeeded or Failed. Field selectors have no "in", so it is the other
// phases excluded; the API server sets Pending on every pod it stores, so
// no pod lacks a phase.
var finishedSelector = fields.AndSelectors(
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodPending)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodRunning)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodUnknown)),
)

// NewFinishedPods makes mgr's FinishedPods cache and runs it with mgr on
// every replica. Nothing waits for it to sync: a list that keeps failing
// leaves the finished pods' Secrets in place (until their pods are
// deleted), not the manager's start or stop nor the Secret controller's
// other deletions.
func NewFinishedPods(mgr manager.Manager) (*FinishedPods, error) {
	hasUUID := labels.NewSelector().Add(mustRequirement(ProxyUUIDLabel, selection.Exists))
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: hasUUID, Field: finishedSelector, Transform: keepMetadata(ProxyUUIDLabel)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("injector: making the finished pods' cache: %w", err)
	}
	inf, err := c.GetInformer(context.Background(), metadataOf(podKind))
	if err != nil {
		return nil, fmt.Errorf("injector: finished pods' informer: %w", err)
	}
	if err := inf.AddIndexers(toolscache.Indexers{podUUIDIndexName: podUUIDIndexFunc}); err != nil {
		return nil, fmt.Errorf("injector: indexing finished pods by %s: %w", ProxyUUIDLabel, err)
	}
	f := &FinishedPods{cache: c}
	if err := mgr.Add(f); err != nil {
		return nil, fmt.Errorf("injector: running the finished pods' cache: %w", err)
	}
	return f, nil
}

// Start runs the cache until ctx ends.
func (f *FinishedPods) Start(ctx context.Context) error { return f.cache.Start(ctx) }

// NeedLeaderElection: every replica cleans up.
func (*FinishedPods) NeedLeaderElection() bool { return false }

// isFinished: the kubelet starts no container of a pod in phase p again.
func isFinished(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}

// withUUID is the uids of the finished pods of namespace carrying proxy uuid
// id.
func (f *FinishedPods) withUUID(ctx context.Context, namespace, id string) ([]types.UID, error) {
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := f.cache.List(ctx, pods, client.InNamespace(namespace), client.MatchingFields{podUUIDIndex: id}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing finished pods with %s=%s in %s: %w", ProxyUUIDLabel, id, namespace, err)
	}
	uids := make([]types.UID, len(pods.Items))
	for i := range pods.Items {
		uids[i] = pods.Items[i].UID
	}
	return uids, nil
}

// uuidFinished decides whether the pods carrying a proxy uuid have all
// finished: finished are the uids of those the finished pods' cache holds,
// carriers those the pod cache holds (which may lag it either way). A pod
// never leaves a finished phase, so one finished pod is enough unless
// another, still running, carries the uuid too (a label changed to another
// pod's uuid).
func uuidFinished(finished, carriers []types.UID) bool {
	if len(finished) == 0 {
		return false
	}
	for _, uid := range carriers {
		if !slices.Contains(finished, uid) {
			return false
		}
	}
	return true
}

// has reports whether pod uid of namespace, carrying proxy uuid id, is known
// to have finished. Only once the cache has synced: the writer, which asks,
// must not wait on it (a pod's phase read from the API server decides the
// rest), so a nil cache, one still listing or a failed read say no.
func (f *FinishedPods) has(ctx context.Context, namespace, id string, uid types.UID) bool {
	if !f.synced(ctx) {
		return false
	}
	uids, err := f.withUUID(ctx, namespace, id)
	return err == nil && slices.Contains(uids, uid)
}

// synced reports whether the cache has listed, without waiting for it (a
// read of an unsynced cache blocks until it syncs); false for a nil cache.
func (f *FinishedPods) synced(ctx context.Context) bool {
	if f == nil {
		return false
	}
	inf, err := f.cache.GetInformer(ctx, metadataOf(podKind), cache.BlockUntilSynced(false))
	return err == nil && inf.HasSynced()
}
