package injector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// DefaultOrphanGracePeriod is how long a bootstrap Secret may wait for its
// pod. A pod refused after our webhook (a later webhook, quota, a dry run of
// the whole chain), or one that never existed (an AdmissionReview posted by a
// caller that is not the apiserver), never appears; its Secret is deleted
// once this has passed and the API server lists no pod with its uuid label.
// So is the Secret of a pod deleted while no replica of the controller
// watched; one whose pod the controller saw deleted does not wait.
// The apiserver gives a create request at most 34 s (requestTimeoutUpperBound
// in k8s.io/apiserver's handlers, admission and storage included), and the
// Secret is written inside that request, so a pod stored later than 34 s
// after its Secret does not exist; the rest is slack for clock skew between
// the apiserver (creationTimestamp) and this process.
const DefaultOrphanGracePeriod = time.Minute

// SecretControllerOptions configure the bootstrap Secret controller.
type SecretControllerOptions struct {
	// MeshName selects the mesh's Secrets (label app.kubernetes.io/instance).
	MeshName string
	// GracePeriod defaults to DefaultOrphanGracePeriod.
	GracePeriod time.Duration
	// Finished is the cache of finished meshed pods, whose Secrets are
	// deleted too (ReasonPodFinished); nil: SetupSecretController makes one
	// (NewFinishedPods). serve shares one with SetupSecretWriter.
	Finished *FinishedPods
	Logger   logr.Logger
}

// CacheByObject restricts the manager's Pod and Secret caches to the objects
// this package cares about (meshed pods, bootstrap Secrets); without it the
// controller would cache every Secret of the cluster. Each cached pod and
// Secret keeps only the metadata the controllers read (keepMetadata). Merge
// it into cache.Options.ByObject; its transforms replace the cache's
// DefaultTransform for these two kinds.
func CacheByObject() map[client.Object]cache.ByObject {
	hasUUID, _ := labels.NewRequirement(ProxyUUIDLabel, selection.Exists, nil)
	isOurs, _ := labels.NewRequirement(appNameLabel, selection.Equals, []string{appNameValue})
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}:    {Label: labels.NewSelector().Add(*hasUUID), Transform: keepMetadata(ProxyUUIDLabel)},
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*hasUUID, *isOurs), Transform: keepMetadata(ProxyUUIDLabel, appNameLabel, appInstanceLabel)},
	}
}

// keepMetadata is the cache transform of the controllers' metadata-only pods
// and Secrets. It keeps what they read (name, namespace, uid; the
// resourceVersion a delete's precondition names; the creation and deletion
// timestamps; the labels named) and drops the rest: annotations, owner
// references, finalizers, managedFields and other labels are the users' and
// other tools' to size, and a cache of every meshed pod would grow with them
// (a pod with CNI status annotations carries kilobytes). A full object, which
// nothing here caches, only loses its managedFields, as under the cache's
// default transform. Idempotent, as client-go requires of a transform.
func keepMetadata(labelKeys ...string) toolscache.TransformFunc {
	stripManagedFields := cache.TransformStripManagedFields()
	return func(obj any) (any, error) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return stripManagedFields(obj)
		}
		m.ObjectMeta = metav1.ObjectMeta{
			Name:              m.Name,
			Namespace:         m.Namespace,
			UID:               m.UID,
			ResourceVersion:   m.ResourceVersion,
			CreationTimestamp: m.CreationTimestamp,
			DeletionTimestamp: m.DeletionTimestamp,
			Labels:            onlyLabels(m.Labels, labelKeys),
		}
		return m, nil
	}
}

// onlyLabels is l restricted to keys, in place: the decoded map is the
// transform's own, and a map of up to eight entries takes the same memory
// whatever it holds, so a new one would only add to the garbage.
func onlyLabels(l map[string]string, keys []string) map[string]string {
	maps.DeleteFunc(l, func(k, _ string) bool { return !slices.Contains(keys, k) })
	return l
}

// ControllerServiceCacheByObject restricts the manager's Service cache to
// FSM's controller Service in the fsm namespace, which the handler reads while
// MeshConfig spec.sidecar.localDNSProxy.enable is on (HandlerCaches starts
// its informer with the others, and readiness waits for it). Merge it into cache.Options.ByObject beside
// CacheByObject.
func ControllerServiceCacheByObject(fsmNamespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Service{}: {
			Namespaces: map[string]cache.Config{fsmNamespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", ControllerServiceName),
		},
	}
}

// HandlerCaches are the kinds the Handler reads through the manager's cache
// (Options.Namespaces, Services, Pods, and CachedMeshConfig): serve
// registers their informers before the cache starts and keeps the injector
// unready until they have synced (webhooks.CachesSynced), so no admission
// waits on a cache still listing.
func HandlerCaches() []client.Object {
	return []client.Object{&corev1.Namespace{}, &corev1.Service{}, &configv1alpha3.MeshConfig{}, metadataOf(podKind)}
}

// SetupSecretController registers the controller that deletes bootstrap
// Secrets nobody needs any more: a Secret whose pod this process saw deleted
// is deleted at once, and so is one whose pods all finished (phase
// Succeeded or Failed: no container of it starts again, though the pod
// object may stay for long; opts.Finished); a Secret whose pod is not there
// once the grace period has passed (the pod never appeared, or it was
// deleted while no replica watched) is deleted then, only after the API
// server confirms that no pod carries the Secret's uuid. The controller never writes to a Secret
// (no owner reference: design (a) in docs/design.md), so each meshed pod
// costs the pod and Secret creates and their deletes, nothing more.
func SetupSecretController(mgr manager.Manager, opts SecretControllerOptions) error {
	if opts.MeshName == "" {
		return fmt.Errorf("injector: SecretControllerOptions.MeshName not set")
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = DefaultOrphanGracePeriod
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = mgr.GetLogger()
	}
	// Looking a pod up by its proxy uuid must not scan every cached pod of
	// the namespace: with N meshed pods that made N Secret reconciles O(N²).
	if err := indexPodsByUUID(context.Background(), mgr.GetCache()); err != nil {
		return fmt.Errorf("injector: indexing pods by %s: %w", ProxyUUIDLabel, err)
	}
	if opts.Finished == nil {
		f, err := NewFinishedPods(mgr)
		if err != nil {
			return err
		}
		opts.Finished = f
	}
	r := newSecretReconciler(mgr.GetClient(), mgr.GetAPIReader(), opts)
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool { return isBootstrapSecret(o, opts.MeshName) })
	err := builder.ControllerManagedBy(mgr).
		Named("injector-bootstrap-secrets").
		// Metadata only: everything the controller reads is in metadata, and
		// the webhook's memory never holds every meshed pod's private key.
		For(&corev1.Secret{}, builder.OnlyMetadata, builder.WithPredicates(ours)).
		// Here only a pod's removal matters, or its uuid label changed (the
		// old Secret is then rechecked as if its pod were gone); a pod
		// finishing comes through the finished pods' cache, below (this
		// cache has no phase). A live pod's
		// Secret is kept whether or not the pod is cached yet (the grace
		// period and the API server cover the cache's lag). The informer
		// reports the removal once the object is gone from storage, after
		// the kubelet has stopped the containers, not when
		// deletionTimestamp is set.
		WatchesMetadata(&corev1.Pod{}, handler.Funcs{DeleteFunc: r.podDeleted, UpdateFunc: r.podRelabelled}).
		// A pod that finishes enters the finished pods' selection: the API
		// server sends it as added, once (its first list sends those that
		// finished before). Not waited for: a list of it that never
		// succeeds must hold up only the finished pods' Secrets, not every
		// deletion this controller makes.
		WatchesRawSource(notWaitedFor{source.Kind[client.Object](opts.Finished.cache, metadataOf(podKind), handler.Funcs{CreateFunc: r.podFinished})}).
		// Pods are deleted as fast as they are created, and each worker
		// waits on a Delete's round trip: keeping up takes workers ≥ churn
		// rate × the apiserver's write latency (Little's law). Four kept up
		// for 3 minutes at 100 pods/s but not for 10 (25,892 Secrets for
		// 5,000 pods at the end, write latency 0.1-0.9 s on a loaded
		// apiserver); the controllers' client limit (200/s) still bounds the
		// rate.
		WithOptions(controller.Options{MaxConcurrentReconciles: secretWorkers, CacheSyncTimeout: secretCacheSyncTimeout,
			LogConstructor: plainReconcileLog(opts.Logger, "injector-bootstrap-secrets")}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("injector: setting up bootstrap Secret controller: %w", err)
	}
	return nil
}

// finishedSyncRecheck spaces the reconciles of a finished pod's Secret
// queued before the finished pods' cache had synced.
const finishedSyncRecheck = time.Second

// notWaitedFor is a source the controller starts without waiting for its
// informer to sync (it has no WaitForSync): its events come once it has.
type notWaitedFor struct{ source.Source }

// secretCacheSyncTimeout is how long the bootstrap Secret controller waits,
// as it starts, for its Secret informer to list: for as long as the replica
// runs. The default CacheSyncTimeout (2 minutes) made an apiserver outage
// that long as a replica started end serve. Registering the informer with
// the manager's caches instead made every controller wait for it, and the
// manager, which does not watch its context while it waits for its caches,
// then did not stop until Secrets listed again (a shutdown left to SIGKILL).
// The controller's wait ends with the manager's context.
const secretCacheSyncTimeout = time.Duration(math.MaxInt64)

// plainReconcileLog replaces controller-runtime's per-reconcile logger,
// which attaches the request's kind, namespace and name with WithValues on
// every reconcile: zap encodes them at once, 2.5% of serve's CPU at 100 pods/s
// for a logger these reconcilers never take from the context. They log with
// the Secret's key when they log, and their errors name it. The logger
// also defers what is added to it later: controller-runtime still adds a
// reconcileID to every reconcile's logger (1.8% of serve's CPU at 100
// pods/s), which is then encoded only if that reconcile logs through it.
func plainReconcileLog(base logr.Logger, controllerName string) func(*reconcile.Request) logr.Logger {
	l := deferValues(base.WithValues("controller", controllerName))
	return func(*reconcile.Request) logr.Logger { return l }
}

// deferValues is l with WithValues deferred to the first line logged
// (deferredValues).
func deferValues(l logr.Logger) logr.Logger {
	sink := l.GetSink()
	if sink == nil {
		return l // logr.Discard()
	}
	// deferredValues' own Info and Error are one frame more between the
	// caller and the sink.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	return logr.New(deferredValues{base: sink})
}

// deferredValues is a logr.LogSink that keeps the key/value pairs given to
// WithValues and hands them to its base sink only when a line is logged,
// for loggers made per request that seldom log.
type deferredValues struct {
	base logr.LogSink
	kv   []any
}

// Init does nothing: base was initialised by the logger it came from, and
// zapr's Init adds to the caller skip of a sink others share.
func (deferredValues) Init(logr.RuntimeInfo) {}

func (d deferredValues) Enabled(level int) bool { return d.base.Enabled(level) }

func (d deferredValues) Info(level int, msg string, kv ...any) { d.sink().Info(level, msg, kv...) }

func (d deferredValues) Error(err error, msg string, kv ...any) { d.sink().Error(err, msg, kv...) }

func (d deferredValues) WithValues(kv ...any) logr.LogSink {
	return deferredValues{base: d.base, kv: append(slices.Clip(d.kv), kv...)}
}

func (d deferredValues) WithName(name string) logr.LogSink {
	return deferredValues{base: d.base.WithName(name), kv: d.kv}
}

// WithCallDepth keeps logr.Logger.WithCallDepth working (helpers that log
// for their caller) when base supports it.
func (d deferredValues) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := d.base.(logr.CallDepthLogSink); ok {
		return deferredValues{base: cd.WithCallDepth(depth), kv: d.kv}
	}
	return d
}

func (d deferredValues) sink() logr.LogSink {
	if len(d.kv) == 0 {
		return d.base
	}
	return d.base.WithValues(d.kv...)
}

// secretWorkers is how many bootstrap Secrets the controller handles at
// once (see SetupSecretController).
const secretWorkers = 32

// BootstrapSecretSelector selects mesh's bootstrap Secrets by label; the
// name sidecar-bootstrap-config-<uuid> is checked apart (isBootstrapSecret).
func BootstrapSecretSelector(mesh string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{appNameLabel: appNameValue, appInstanceLabel: mesh}).Add(mustRequirement(ProxyUUIDLabel, selection.Exists))
}

func mustRequirement(key string, op selection.Operator, vals ...string) labels.Requirement {
	r, err := labels.NewRequirement(key, op, vals)
	if err != nil {
		panic(fmt.Sprintf("label requirement %s %s %v: %v", key, op, vals, err))
	}
	return *r
}

// isBootstrapSecret tells whether o is mesh's bootstrap Secret as the
// injector writes it: labelled with the mesh and a uuid, and named after
// that uuid.
func isBootstrapSecret(o metav1.Object, mesh string) bool {
	l := o.GetLabels()
	id := l[ProxyUUIDLabel]
	return id != "" && l[appNameLabel] == appNameValue && l[appInstanceLabel] == mesh && o.GetName() == BootstrapSecretName(id)
}

var (
	podKind    = corev1.SchemeGroupVersion.WithKind("Pod")
	secretKind = corev1.SchemeGroupVersion.WithKind("Secret")
)

// metadataOf is an empty metadata-only object of kind gvk, the form the
// controller caches pods and Secrets in.
func metadataOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	return m
}

// Reasons a bootstrap Secret is deleted: the reason label of
// fsm_webhooks_injector_orphan_secrets_deleted_total.
const (
	// ReasonPodDeleted: this process saw the pod deleted.
	ReasonPodDeleted = "pod-deleted"
	// ReasonNoPod: no pod carried the Secret's uuid once the grace period
	// had passed: the pod never appeared (refused after our webhook), or
	// it was deleted while no replica of the controller watched.
	ReasonNoPod = "no-pod-after-grace"
	// ReasonPodFinished: its pod finished (phase Succeeded or Failed) and
	// will never start a container again, though it is not deleted.
	ReasonPodFinished = "pod-finished"
)

var orphansDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "fsm_webhooks_injector_orphan_secrets_deleted_total",
	Help: "Bootstrap Secrets the injector deleted, by reason: " + ReasonPodDeleted + " (the controller saw the pod deleted), " +
		ReasonNoPod + " (no pod with the Secret's uuid once the grace period had passed: the pod never appeared, or was deleted while no replica ran), " +
		ReasonPodFinished + " (the pod finished, phase Succeeded or Failed, and is kept: its containers never start again). " +
		"Secrets the garbage collector deleted (owned by their pod, e.g. by FSM's controller) are not counted.",
}, []string{"reason"})

func init() {
	// Every series exists from the start, so a rate over them is defined.
	orphansDeleted.WithLabelValues(ReasonPodDeleted)
	orphansDeleted.WithLabelValues(ReasonNoPod)
	orphansDeleted.WithLabelValues(ReasonPodFinished)
	metrics.Registry.MustRegister(orphansDeleted)
}

// podUUIDIndex is the cache index of pods by their proxy uuid label.
const podUUIDIndex = "injector.flomesh.io/proxy-uuid"

// indexPodsByUUID adds podUUIDIndex to the pod cache, for lookups within a
// namespace (client.InNamespace and client.MatchingFields{podUUIDIndex: id}
// through the cache). controller-runtime's IndexField would store every
// value twice, as "<ns>/<id>" and "__all_namespaces/<id>": with the store's
// own entry, 825 B of live heap a pod against 461 B for the namespaced key
// alone (BenchmarkPodUUIDIndex). No lookup here spans namespaces, so the
// index holds the namespaced key only, named and formed as
// controller-runtime's cache reader asks for it ("field:<name>",
// "<ns>/<value>"); TestE2E looks pods up through a real cache with it.
func indexPodsByUUID(ctx context.Context, c cache.Informers) error {
	inf, err := c.GetInformer(ctx, metadataOf(podKind))
	if err != nil {
		return err
	}
	return inf.AddIndexers(toolscache.Indexers{podUUIDIndexName: podUUIDIndexFunc})
}

// podUUIDIndexName is podUUIDIndex as controller-runtime's cache names it.
const podUUIDIndexName = "field:" + podUUIDIndex

// podUUIDIndexFunc gives a cached pod's key in podUUIDIndex: its namespace
// and proxy uuid, none without a uuid.
func podUUIDIndexFunc(o any) ([]string, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("indexing pods by %s: object of type %T", ProxyUUIDLabel, o)
	}
	id := m.GetLabels()[ProxyUUIDLabel]
	if id == "" || m.GetNamespace() == "" {
		return nil, nil
	}
	return []string{m.GetNamespace() + "/" + id}, nil
}

// podState is what the controller knows of the pod a bootstrap Secret
// belongs to.
type podState int

const (
	// podNotSeen: the pod is neither cached nor seen deleted (not stored
	// yet, never stored, or deleted while this process did not watch).
	podNotSeen podState = iota
	// podExists: a pod carries the Secret's uuid.
	podExists
	// podDeleted: this process saw the pod with the Secret's uuid deleted.
	// A uuid is made per admission, so no pod carries it again.
	podDeleted
	// podFinished: every pod carrying the uuid has finished (phase
	// Succeeded or Failed): no container of it starts again.
	podFinished
)

func (s podState) String() string {
	switch s {
	case podNotSeen:
		return "not seen"
	case podExists:
		return "exists"
	case podDeleted:
		return "deleted"
	case podFinished:
		return "finished"
	}
	return fmt.Sprintf("podState(%d)", int(s))
}

// secretVerdict is what to do with a bootstrap Secret.
type secretVerdict int

const (
	// ignoreSecret: not mesh's bootstrap Secret, or being deleted already.
	ignoreSecret secretVerdict = iota
	// keepSecret: its pod exists.
	keepSecret
	// waitForPod: its pod may still be stored; look again after Wait.
	waitForPod
	// deleteSecret: its pod is gone, finished or never came (Reason says
	// which).
	deleteSecret
)

// secretAction is decideSecret's answer.
type secretAction struct {
	Verdict secretVerdict
	Wait    time.Duration // waitForPod: until the grace period ends
	Reason  string        // deleteSecret: ReasonPodDeleted, ReasonPodFinished or ReasonNoPod
}

// decideSecret decides, from the Secret's metadata and what is known of its
// pod at now, whether a bootstrap Secret of mesh is kept, looked at again
// later, or deleted. Owner references play no part: whoever wrote them (FSM's
// controller, older versions of ours), the garbage collector and this
// controller agree on the outcome, and the first delete wins.
func decideSecret(secret metav1.Object, mesh string, pod podState, grace time.Duration, now time.Time) secretAction {
	if !isBootstrapSecret(secret, mesh) || secret.GetDeletionTimestamp() != nil {
		return secretAction{Verdict: ignoreSecret}
	}
	switch pod {
	case podExists:
		return secretAction{Verdict: keepSecret}
	case podDeleted:
		return secretAction{Verdict: deleteSecret, Reason: ReasonPodDeleted}
	case podFinished:
		return secretAction{Verdict: deleteSecret, Reason: ReasonPodFinished}
	}
	if wait := secret.GetCreationTimestamp().Add(grace).Sub(now); wait > 0 {
		return secretAction{Verdict: waitForPod, Wait: wait}
	}
	return secretAction{Verdict: deleteSecret, Reason: ReasonNoPod}
}

type secretReconciler struct {
	client client.Client
	live   client.Reader
	opts   SecretControllerOptions
	now    func() time.Time
	// finished: nil in unit tests that give none (no pod is finished).
	finished *FinishedPods

	// deleted maps the Secrets (namespace/name) whose pod this process saw
	// deleted, and that have not been reconciled since, to that pod.
	// Every entry is added together with a reconcile request for the same
	// key, and that reconcile removes it, so the map stays as small as the
	// queue.
	mu      sync.Mutex
	deleted map[types.NamespacedName]deletedPod
	// finishing holds the Secrets podFinished queued before the finished
	// pods' cache had synced (its first list delivers each pod before the
	// cache says it has synced, and the reconcile reads no unsynced cache):
	// they are looked at again until it has. Guarded by mu.
	finishing map[types.NamespacedName]struct{}

	// mounted maps, by namespace, the cached meshed pods (by uid) whose
	// bootstrap volume podMounting had to learn from the API server to the
	// Secret that volume names ("" for none, or once the pod has finished:
	// it needs none). A pod's volumes cannot change and its uid is never
	// reused, so what was learnt once holds for as long
	// as the pod lives: FSM's pods during a migration (their Secrets lack
	// our labels, so the Secret cache never has them) are read once per
	// replica, not once per orphan. An entry goes when the pod informer
	// reports the pod gone (podDeleted), and podMounting drops those of
	// pods no longer cached.
	mountedMu sync.Mutex
	mounted   map[string]map[types.UID]string
}

// deletedPod is a pod the pod informer reported DELETED.
type deletedPod struct {
	name string
	uid  types.UID
	// confirmed: the object carried a deletionTimestamp. The API server
	// sets it on every pod it deletes, so an object without one left the
	// informer's selection (its fsm-proxy-uuid label was removed or
	// changed) or is a tombstone of unknown fate: its pod may still run.
	confirmed bool
}

func newSecretReconciler(c client.Client, live client.Reader, opts SecretControllerOptions) *secretReconciler {
	return &secretReconciler{client: c, live: live, opts: opts, now: time.Now, finished: opts.Finished, deleted: map[types.NamespacedName]deletedPod{}, finishing: map[types.NamespacedName]struct{}{}, mounted: map[string]map[types.UID]string{}}
}

// podDeleted records that the pod of a bootstrap Secret is reported gone and
// queues that Secret. The informer selects pods by their uuid label, so a
// live pod whose label is removed is reported DELETED too, with its old
// labels (one whose label changes value comes through podRelabelled); such
// a report (no deletionTimestamp: tombstones of a delete
// missed during a relist included) is confirmed by the reconcile with the
// API server before the Secret goes. No API call here: this runs on the
// informer's delivery goroutine.
func (r *secretReconciler) podDeleted(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	// The pod left the cache: what podMounting learnt of it goes too. Its
	// namespace's next sweep would drop it, but a deleted namespace has
	// none, and its entries stayed until the process restarted.
	r.forgetMount(e.Object.GetNamespace(), e.Object.GetUID())
	r.secretLost(e.Object, q)
}

// secretLost remembers that the pod o no longer carries its uuid (deleted,
// or relabelled) and queues that uuid's Secret.
func (r *secretReconciler) secretLost(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	id := o.GetLabels()[ProxyUUIDLabel]
	if id == "" {
		return
	}
	key := types.NamespacedName{Namespace: o.GetNamespace(), Name: BootstrapSecretName(id)}
	r.mu.Lock()
	r.deleted[key] = deletedPod{name: o.GetName(), uid: o.GetUID(), confirmed: o.GetDeletionTimestamp() != nil}
	r.mu.Unlock()
	q.Add(reconcile.Request{NamespacedName: key})
}

// podRelabelled treats a pod whose uuid label changed value (it stays in
// the informer's selection, so no DELETE comes) as gone from its old uuid:
// that Secret is queued and, the pod being alive, confirmed with the API
// server like any unconfirmed removal, so it goes once no pod mounts it.
func (r *secretReconciler) podRelabelled(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	old := e.ObjectOld.GetLabels()[ProxyUUIDLabel]
	if old == "" || old == e.ObjectNew.GetLabels()[ProxyUUIDLabel] {
		return
	}
	// Still cached, with the same volumes: what was learnt of its mount
	// holds.
	r.secretLost(e.ObjectOld, q)
}

// podFinished queues the Secret of a pod that finished (it entered the
// finished pods' selection); the reconcile finds it in that cache.
func (r *secretReconciler) podFinished(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	id := e.Object.GetLabels()[ProxyUUIDLabel]
	if id == "" {
		return
	}
	key := types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: BootstrapSecretName(id)}
	if !r.finished.synced(ctx) {
		r.mu.Lock()
		r.finishing[key] = struct{}{}
		r.mu.Unlock()
	}
	q.Add(reconcile.Request{NamespacedName: key})
}

// finishedUnsynced reports whether Secret key waits for the finished pods'
// cache to sync (finishing), and forgets it once the cache has.
func (r *secretReconciler) finishedUnsynced(ctx context.Context, key types.NamespacedName) bool {
	synced := r.finished.synced(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.finishing[key]; !ok {
		return false
	}
	if synced {
		delete(r.finishing, key)
	}
	return !synced
}

// uuidFinished reports whether the pods of namespace carrying proxy uuid id
// have all finished (uuidFinished), from the caches only: a pod's phase
// never leaves Succeeded or Failed, so what the finished pods' cache holds
// stays true. Only when a finished pod carries it are the pod cache's
// carriers listed. Until that cache has synced no pod counts as finished:
// the reconcile must not wait on it (notWaitedFor), and a pod that
// finished before is queued again by the cache's first list.
func (r *secretReconciler) uuidFinished(ctx context.Context, namespace, id string) (bool, error) {
	if !r.finished.synced(ctx) {
		return false, nil
	}
	finished, err := r.finished.withUUID(ctx, namespace, id)
	if err != nil || len(finished) == 0 {
		return false, err
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.client.List(ctx, pods, client.InNamespace(namespace), client.MatchingFields{podUUIDIndex: id}, client.UnsafeDisableDeepCopy); err != nil {
		return false, fmt.Errorf("listing pods with %s=%s in %s: %w", ProxyUUIDLabel, id, namespace, err)
	}
	carriers := make([]types.UID, len(pods.Items))
	for i := range pods.Items {
		carriers[i] = pods.Items[i].UID
	}
	return uuidFinished(finished, carriers), nil
}

// sawPodDeleted returns the pod of Secret key that this process saw
// reported deleted.
func (r *secretReconciler) sawPodDeleted(key types.NamespacedName) (pod deletedPod, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pod, ok = r.deleted[key]
	return pod, ok
}

func (r *secretReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.deleted, key)
	delete(r.finishing, key)
	r.mu.Unlock()
}

func (r *secretReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !strings.HasPrefix(req.Name, BootstrapSecretPrefix) {
		return reconcile.Result{}, nil
	}
	res, done, err := r.reconcile(ctx, req.NamespacedName)
	if done {
		r.forget(req.NamespacedName)
	}
	if stopping(ctx, err) {
		// Not an error: controller-runtime would log one, with a stack
		// trace, for every reconcile in flight as serve stops. Another
		// replica's sweep, or the next start's (its first list queues
		// every Secret), takes the Secret up again.
		r.opts.Logger.V(1).Info("bootstrap Secret left as it is: the controller is stopping", "secret", req.String(), "reason", err.Error())
		return reconcile.Result{}, nil
	}
	return res, err
}

// stopping reports whether err is the cancellation of ctx, which the manager
// cancels as it stops: a reconcile cut short then has nothing to retry.
func stopping(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled)
}

// reconcile acts on one Secret; done says the Secret needs no memory of its
// pod's deletion any more (it is gone, kept, or not ours).
func (r *secretReconciler) reconcile(ctx context.Context, key types.NamespacedName) (res reconcile.Result, done bool, err error) {
	secret := metadataOf(secretKind)
	if err := r.client.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, true, nil
		}
		return reconcile.Result{}, false, fmt.Errorf("reading bootstrap Secret %s: %w", key, err)
	}
	id := secret.Labels[ProxyUUIDLabel]
	cachedPod, err := cachedPodWithUUID(ctx, r.client, secret.Namespace, id)
	if err != nil {
		return reconcile.Result{}, false, err
	}
	pod := podNotSeen
	if cachedPod != nil {
		pod = podExists
	} else if gone, saw := r.sawPodDeleted(key); saw {
		pod = podDeleted
		if !gone.confirmed {
			live, err := r.podStillRunning(ctx, secret.Namespace, gone)
			if err != nil {
				return reconcile.Result{}, false, err
			}
			if live {
				r.opts.Logger.V(1).Info("kept bootstrap Secret: its pod lost its uuid label but runs on", "secret", key.String(), "pod", gone.name, "proxyUUID", id)
				return r.recheckRelabelled(), true, nil
			}
		}
	}
	if pod != podDeleted {
		if r.finishedUnsynced(ctx, key) {
			return reconcile.Result{RequeueAfter: finishedSyncRecheck}, false, nil
		}
		// Cached or not yet: a pod the finished pods' cache has may be
		// one the pod cache has not caught up with.
		fin, err := r.uuidFinished(ctx, secret.Namespace, id)
		if err != nil {
			return reconcile.Result{}, false, err
		}
		if fin {
			pod = podFinished
		}
	}
	act := decideSecret(secret, r.opts.MeshName, pod, r.opts.GracePeriod, r.now())
	switch act.Verdict {
	case ignoreSecret, keepSecret:
		return reconcile.Result{}, true, nil
	case waitForPod:
		return reconcile.Result{RequeueAfter: act.Wait + time.Second}, false, nil
	}
	// A pod seen deleted (deletionTimestamp set) needs no API call: the
	// informer that delivered its deletion fills the cache, which holds no
	// other pod with the uuid (one is made per admission). The API server would cost a read per deleted
	// pod, and at pod churn the controller's client budget then fell behind
	// (45,617 of 60,000 Secrets left after 10 min at 100 pods/s). A Secret
	// whose pod was never seen is deleted only if the API server, asked
	// then, has no pod with its uuid: the cache may lag a pod created a
	// moment ago. It has no custom index: select by label. A finished pod,
	// like a deleted one, needs no such read: its phase never changes back.
	if pod == podNotSeen {
		livePod, err := podWithUUID(ctx, r.live, secret.Namespace, id, client.MatchingLabels{ProxyUUIDLabel: id})
		if err != nil {
			return reconcile.Result{}, false, err
		}
		if livePod != nil {
			r.opts.Logger.V(1).Info("kept bootstrap Secret: the API server has its pod", "secret", key.String(), "proxyUUID", id)
			return reconcile.Result{}, true, nil
		}
	}
	// Another pod may mount the Secret without carrying its uuid: one
	// whose label was removed or changed, or a copy of the pod made while
	// it ran (kubectl debug --copy-to drops the labels; a copy not
	// re-injected keeps the bootstrap volume). The finished pod's uuid says
	// nothing of it: deleted, that pod could not start again.
	if pod != podDeleted {
		mounting, err := r.podMounting(ctx, secret.Namespace, secret.Name)
		if err != nil {
			return reconcile.Result{}, false, err
		}
		if mounting != "" {
			r.opts.Logger.V(1).Info("kept bootstrap Secret: a pod not carrying its uuid mounts it", "secret", key.String(), "pod", mounting, "proxyUUID", id)
			return r.recheckRelabelled(), true, nil
		}
	}
	uid, rv := secret.UID, secret.ResourceVersion
	err = r.client.Delete(ctx, secret, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	switch {
	case apierrors.IsNotFound(err):
		// The garbage collector (the pod was its owner) or another replica
		// was first.
		return reconcile.Result{}, true, nil
	case apierrors.IsConflict(err):
		// Changed since the cache had it (FSM's controller appending an
		// owner, a trust rotation): the change comes back through the watch,
		// and the pod's deletion is still remembered.
		return reconcile.Result{}, false, nil
	case err != nil:
		return reconcile.Result{}, false, fmt.Errorf("deleting bootstrap Secret %s (pod %s): %w", key, pod, err)
	}
	orphansDeleted.WithLabelValues(act.Reason).Inc()
	// The logger takes the Secret's key here, not per reconcile: zap
	// encodes values when they are attached, and most reconciles log nothing.
	// A deleted (or finished: every Job's pod) pod's Secret is every meshed
	// pod's end, as routine as its admission (which logs nothing by
	// default): at V(1), or pod churn floods the default log with a line
	// per pod. An orphan swept after the grace period is not routine and
	// stays at info.
	log := r.opts.Logger
	if act.Reason == ReasonPodDeleted || act.Reason == ReasonPodFinished {
		log = log.V(1)
	}
	log.Info("deleted bootstrap Secret", "secret", key.String(), "reason", act.Reason, "proxyUUID", id, "age", r.now().Sub(secret.CreationTimestamp.Time).Round(time.Second))
	return reconcile.Result{}, true, nil
}

// recheckRelabelled brings back a Secret kept for a pod that no longer
// carries its uuid label: that pod has left the label-selected watch, so
// its deletion sends no event, and without a recheck the Secret would
// outlive it until the next resync (hours). Rechecked every grace period,
// it goes within one of its pod.
func (r *secretReconciler) recheckRelabelled() reconcile.Result {
	return reconcile.Result{RequeueAfter: r.opts.GracePeriod}
}

// podStillRunning asks the API server whether the pod reported deleted
// without a deletionTimestamp is still there: the same name and uid. A pod
// of that name with another uid is a new pod (a StatefulSet's), and the
// reported one is gone.
func (r *secretReconciler) podStillRunning(ctx context.Context, namespace string, p deletedPod) (bool, error) {
	m := metadataOf(podKind)
	err := r.live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: p.name}, m)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading pod %s/%s: %w", namespace, p.name, err)
	}
	return m.UID == p.uid, nil
}

// podMounting names a pod of namespace, as the API server has it, that
// mounts Secret secretName as its bootstrap volume without carrying the
// Secret's uuid label and has not finished; "" if none (a finished pod
// never starts a container again, so it needs no Secret). The sweep finds
// a Secret's pod by that label, and nothing else (no owner reference is
// written) leads from the Secret to its pod, so a pod whose label was removed or changed would
// otherwise lose its Secret while it runs. Only reads, and only before a
// Secret would be deleted: the pods without the label (a page at a time; few
// in a meshed namespace), and each cached pod whose own uuid is carried by
// another pod too (a label changed to another pod's uuid) or has no
// bootstrap Secret, in the cache or else (a metadata read) in the API server
// (a changed label, a pod whose Secret is being written). A Secret that
// exists outside the cache is normally FSM's, for a pod FSM injected; what
// is learnt of a pod's volume from the API server is kept (mounted), so each
// such pod costs one small read per replica, not one per orphan.
func (r *secretReconciler) podMounting(ctx context.Context, namespace, secretName string) (string, error) {
	noUUID := labels.NewSelector().Add(mustRequirement(ProxyUUIDLabel, selection.DoesNotExist))
	pods := &corev1.PodList{}
	opts := []client.ListOption{client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: noUUID}, client.Limit(100)}
	for {
		if err := r.live.List(ctx, pods, opts...); err != nil {
			return "", fmt.Errorf("listing pods without %s in %s: %w", ProxyUUIDLabel, namespace, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if bootstrapVolumeSecret(p) == secretName && !isFinished(p.Status.Phase) {
				return p.Name, nil
			}
		}
		if pods.Continue == "" {
			break
		}
		opts = append(opts[:3:3], client.Continue(pods.Continue))
	}

	cached := &metav1.PartialObjectMetadataList{}
	cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.client.List(ctx, cached, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return "", fmt.Errorf("listing cached pods in %s: %w", namespace, err)
	}
	// A uuid two pods carry means one of them was relabelled to the
	// other's: its own Secret existing says nothing of what it mounts.
	carriers := make(map[string]int, len(cached.Items))
	for i := range cached.Items {
		carriers[cached.Items[i].Labels[ProxyUUIDLabel]]++
	}
	for i := range cached.Items {
		m := &cached.Items[i]
		id := m.Labels[ProxyUUIDLabel]
		if mounted, ok := r.learntMount(namespace, m.UID); ok {
			if mounted == secretName && !r.finished.has(ctx, namespace, id, m.UID) {
				return m.Name, nil
			}
			continue
		}
		own := types.NamespacedName{Namespace: namespace, Name: BootstrapSecretName(id)}
		if own.Name == secretName {
			continue
		}
		if carriers[id] == 1 {
			// The pod's own Secret exists, so the pod mounts it: the
			// injector (ours or FSM's) labels a pod with the uuid of the
			// Secret it mounts, and a label changed to another uuid
			// whose Secret exists is another pod's (counted above). The
			// cache holds only our Secrets; FSM's are asked for, their
			// metadata only.
			err := r.client.Get(ctx, own, metadataOf(secretKind))
			if err == nil {
				continue
			}
			if !apierrors.IsNotFound(err) {
				return "", fmt.Errorf("reading bootstrap Secret %s: %w", own, err)
			}
			err = r.live.Get(ctx, own, metadataOf(secretKind))
			if err == nil {
				r.learnMount(namespace, m.UID, own.Name)
				continue
			}
			if !apierrors.IsNotFound(err) {
				return "", fmt.Errorf("reading bootstrap Secret %s: %w", own, err)
			}
		}
		if r.finished.has(ctx, namespace, id, m.UID) {
			// Its Secret is gone (the cleanup deleted it), and it needs
			// none: no read of a finished pod's volumes.
			continue
		}
		p := &corev1.Pod{}
		if err := r.live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: m.Name}, p); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", fmt.Errorf("reading pod %s/%s: %w", namespace, m.Name, err)
		}
		if p.UID != m.UID {
			// Another pod of that name since the cache listed: it is
			// not the one whose mount would be learnt here.
			if bootstrapVolumeSecret(p) == secretName && !isFinished(p.Status.Phase) {
				return p.Name, nil
			}
			continue
		}
		mounted := bootstrapVolumeSecret(p)
		if isFinished(p.Status.Phase) {
			mounted = "" // it needs none, now and for good
		}
		r.learnMount(namespace, m.UID, mounted)
		if mounted == secretName {
			return p.Name, nil
		}
	}
	r.forgetMounts(namespace, cached.Items)
	return "", nil
}

// bootstrapVolumeSecret is the Secret p's bootstrap volume names, "" if it
// has none.
func bootstrapVolumeSecret(p *corev1.Pod) string {
	for _, v := range p.Spec.Volumes {
		if v.Name == BootstrapVolumeName && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

// learntMount is the Secret that pod uid of namespace mounts, if
// podMounting learnt it from the API server.
func (r *secretReconciler) learntMount(namespace string, uid types.UID) (string, bool) {
	r.mountedMu.Lock()
	defer r.mountedMu.Unlock()
	name, ok := r.mounted[namespace][uid]
	return name, ok
}

func (r *secretReconciler) learnMount(namespace string, uid types.UID, secretName string) {
	r.mountedMu.Lock()
	defer r.mountedMu.Unlock()
	if r.mounted[namespace] == nil {
		r.mounted[namespace] = map[types.UID]string{}
	}
	r.mounted[namespace][uid] = secretName
}

// forgetMount drops what was learnt of pod uid of namespace.
func (r *secretReconciler) forgetMount(namespace string, uid types.UID) {
	r.mountedMu.Lock()
	defer r.mountedMu.Unlock()
	learnt, ok := r.mounted[namespace]
	if !ok {
		return
	}
	delete(learnt, uid)
	if len(learnt) == 0 {
		delete(r.mounted, namespace)
	}
}

// forgetMounts drops what was learnt of the pods of namespace that are not
// in cached (its cached pods, all of them): gone, or no longer meshed.
func (r *secretReconciler) forgetMounts(namespace string, cached []metav1.PartialObjectMetadata) {
	r.mountedMu.Lock()
	defer r.mountedMu.Unlock()
	learnt := r.mounted[namespace]
	if len(learnt) == 0 {
		delete(r.mounted, namespace)
		return
	}
	present := make(map[types.UID]struct{}, len(cached))
	for i := range cached {
		present[cached[i].UID] = struct{}{}
	}
	maps.DeleteFunc(learnt, func(uid types.UID, _ string) bool {
		_, ok := present[uid]
		return !ok
	})
	if len(learnt) == 0 {
		delete(r.mounted, namespace)
	}
}

// podWithUUID is a pod of proxy uuid id in namespace as rd has it, nil if
// none; byUUID selects it in rd (the cache's podUUIDIndex, or the label
// for the API server).
func podWithUUID(ctx context.Context, rd client.Reader, namespace, id string, byUUID client.ListOption) (*metav1.PartialObjectMetadata, error) {
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := rd.List(ctx, pods, client.InNamespace(namespace), byUUID, client.Limit(1)); err != nil {
		return nil, fmt.Errorf("listing pods with %s=%s in %s: %w", ProxyUUIDLabel, id, namespace, err)
	}
	if len(pods.Items) == 0 {
		return nil, nil
	}
	return &pods.Items[0], nil
}

// cachedPodWithUUID is podWithUUID in a cache with SetupSecretController's
// index.
func cachedPodWithUUID(ctx context.Context, cache client.Reader, namespace, id string) (*metav1.PartialObjectMetadata, error) {
	if namespace == "" {
		// The index holds namespaced keys only: a cluster-wide lookup
		// would find nothing rather than fail.
		return nil, fmt.Errorf("looking up the pod of proxy uuid %s in the cache: no namespace", id)
	}
	return podWithUUID(ctx, cache, namespace, id, client.MatchingFields{podUUIDIndex: id})
}
