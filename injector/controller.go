package injector

import (
	"context"
	"fmt"
	"strings"
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
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// DefaultOrphanGracePeriod is how long a bootstrap Secret may wait for its
// pod. A pod refused after our webhook (a later webhook, quota, a dry run of
// the whole chain), or one that never existed (an AdmissionReview posted by a
// caller that is not the apiserver), never appears; its Secret is deleted
// once this has passed and the API server lists no pod with its uuid label.
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
	Logger      logr.Logger
}

// CacheByObject restricts the manager's Pod and Secret caches to the objects
// this package cares about (meshed pods, bootstrap Secrets); without it the
// controller would cache every Secret of the cluster. Merge it into
// cache.Options.ByObject.
func CacheByObject() map[client.Object]cache.ByObject {
	hasUUID, _ := labels.NewRequirement(ProxyUUIDLabel, selection.Exists, nil)
	isOurs, _ := labels.NewRequirement(appNameLabel, selection.Equals, []string{appNameValue})
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}:    {Label: labels.NewSelector().Add(*hasUUID)},
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*hasUUID, *isOurs)},
	}
}

// ControllerServiceCacheByObject restricts the manager's Service cache to
// FSM's controller Service in the fsm namespace, which the handler reads while
// MeshConfig spec.sidecar.localDNSProxy.enable is on (the informer starts with
// the first such read). Merge it into cache.Options.ByObject beside
// CacheByObject.
func ControllerServiceCacheByObject(fsmNamespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Service{}: {
			Namespaces: map[string]cache.Config{fsmNamespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", ControllerServiceName),
		},
	}
}

// SetupSecretController registers the controller that makes each bootstrap
// Secret owned by its pod once the pod exists (garbage collection then
// deletes it with the pod) and deletes Secrets whose pod never appeared within
// the grace period. Secrets of live pods are never deleted.
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
	// the namespace: with N meshed pods that made adopting N Secrets O(N²).
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), metadataOf(podKind), podUUIDIndex, func(o client.Object) []string {
		if id := o.GetLabels()[ProxyUUIDLabel]; id != "" {
			return []string{id}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("injector: indexing pods by %s: %w", ProxyUUIDLabel, err)
	}
	r := &secretReconciler{
		client: mgr.GetClient(),
		live:   mgr.GetAPIReader(),
		opts:   opts,
		now:    time.Now,
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		l := o.GetLabels()
		return l[ProxyUUIDLabel] != "" && l[appNameLabel] == appNameValue && l[appInstanceLabel] == opts.MeshName && len(o.GetOwnerReferences()) == 0
	})
	podToSecret := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		id := o.GetLabels()[ProxyUUIDLabel]
		if id == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: BootstrapSecretName(id)}}}
	})
	err := builder.ControllerManagedBy(mgr).
		Named("injector-bootstrap-secrets").
		// Metadata only: everything the controller reads is in metadata, and
		// the webhook's memory never holds every meshed pod's private key.
		For(&corev1.Secret{}, builder.OnlyMetadata, builder.WithPredicates(ours)).
		Watches(&corev1.Pod{}, podToSecret, builder.OnlyMetadata, builder.WithPredicates(predicate.Funcs{
			// A pod's appearance is what the Secret waits for.
			CreateFunc:  func(event.CreateEvent) bool { return true },
			UpdateFunc:  func(event.UpdateEvent) bool { return false },
			DeleteFunc:  func(event.DeleteEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("injector: setting up bootstrap Secret controller: %w", err)
	}
	return nil
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

var orphansDeleted = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "fsm_webhooks_injector_orphan_secrets_deleted_total",
	Help: "Bootstrap Secrets deleted because their pod never appeared within the grace period.",
})

func init() { metrics.Registry.MustRegister(orphansDeleted) }

// podUUIDIndex is the cache index of pods by their proxy uuid label.
const podUUIDIndex = "injector.flomesh.io/proxy-uuid"

type secretReconciler struct {
	client client.Client
	live   client.Reader
	opts   SecretControllerOptions
	now    func() time.Time
}

func (r *secretReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !strings.HasPrefix(req.Name, BootstrapSecretPrefix) {
		return reconcile.Result{}, nil
	}
	log := r.opts.Logger.WithValues("secret", req.NamespacedName)
	secret := metadataOf(secretKind)
	if err := r.client.Get(ctx, req.NamespacedName, secret); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	id := secret.Labels[ProxyUUIDLabel]
	if id == "" || secret.Labels[appInstanceLabel] != r.opts.MeshName || len(secret.OwnerReferences) > 0 {
		return reconcile.Result{}, nil
	}
	pod, err := r.findPod(ctx, r.client, secret.Namespace, id, client.MatchingFields{podUUIDIndex: id})
	if err != nil {
		return reconcile.Result{}, err
	}
	if pod != nil {
		return reconcile.Result{}, r.adopt(ctx, log, secret, pod)
	}
	wait := secret.CreationTimestamp.Add(r.opts.GracePeriod).Sub(r.now())
	if wait > 0 {
		return reconcile.Result{RequeueAfter: wait + time.Second}, nil
	}
	// The cache may lag a pod created a moment ago: ask the API server
	// before deleting anything.
	// The API server has no custom index: it selects by label.
	if pod, err = r.findPod(ctx, r.live, secret.Namespace, id, client.MatchingLabels{ProxyUUIDLabel: id}); err != nil {
		return reconcile.Result{}, err
	}
	if pod != nil {
		return reconcile.Result{}, r.adopt(ctx, log, secret, pod)
	}
	uid, rv := secret.UID, secret.ResourceVersion
	err = r.client.Delete(ctx, secret, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone already, or changed (e.g. adopted) since we read it; a
		// changed one comes back through the watch.
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("deleting orphaned bootstrap Secret: %w", err)
	}
	orphansDeleted.Inc()
	log.Info("deleted orphaned bootstrap Secret: no pod appeared", "proxyUUID", id, "gracePeriod", r.opts.GracePeriod)
	return reconcile.Result{}, nil
}

// findPod returns the pod of proxy uuid id in namespace, or nil; byUUID
// selects it in rd.
func (r *secretReconciler) findPod(ctx context.Context, rd client.Reader, namespace, id string, byUUID client.ListOption) (*metav1.PartialObjectMetadata, error) {
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := rd.List(ctx, pods, client.InNamespace(namespace), byUUID); err != nil {
		return nil, fmt.Errorf("listing pods with %s=%s: %w", ProxyUUIDLabel, id, err)
	}
	if len(pods.Items) == 0 {
		return nil, nil
	}
	return &pods.Items[0], nil
}

// adopt makes pod the owner of secret. The patch carries the resourceVersion
// so a concurrent change makes it fail and retry instead of overwriting.
func (r *secretReconciler) adopt(ctx context.Context, log logr.Logger, secret, pod *metav1.PartialObjectMetadata) error {
	orig := secret.DeepCopy()
	secret.OwnerReferences = append(secret.OwnerReferences, metav1.OwnerReference{
		APIVersion: "v1",
		Kind:       "Pod",
		Name:       pod.Name,
		UID:        pod.UID,
	})
	if err := r.client.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("setting pod %s as owner of bootstrap Secret: %w", pod.Name, err)
	}
	log.V(1).Info("bootstrap Secret now owned by its pod", "pod", pod.Name)
	return nil
}
