package injector

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

var secretCreated = time.Unix(1e9, 0)

// bootstrapSecret is mesh fsm's bootstrap Secret of uuid u1, created at
// secretCreated, changed by mutate.
func bootstrapSecret(mutate ...func(*corev1.Secret)) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: "app", Name: BootstrapSecretName("u1"), UID: "secret-uid",
		CreationTimestamp: metav1.NewTime(secretCreated),
		Labels:            map[string]string{appNameLabel: appNameValue, appInstanceLabel: "fsm", ProxyUUIDLabel: "u1"},
	}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// ownedByPod is how FSM's controller (and older versions of ours) left a
// Secret: the pod appended as owner.
func ownedByPod(s *corev1.Secret) {
	s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "web-x1", UID: "pod-uid"}}
}

// TestDecideSecret: the whole decision, from a Secret's metadata, what is
// known of its pod, and the time.
func TestDecideSecret(t *testing.T) {
	const grace = DefaultOrphanGracePeriod
	deleting := func(s *corev1.Secret) { s.DeletionTimestamp = &metav1.Time{Time: secretCreated.Add(time.Hour)} }
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		pod    podState
		age    time.Duration
		want   secretAction
	}{
		{"pod exists: kept", bootstrapSecret(), podExists, time.Hour, secretAction{Verdict: keepSecret}},
		{"pod exists, young: kept without waiting", bootstrapSecret(), podExists, 0, secretAction{Verdict: keepSecret}},
		{"pod seen deleted, young: deleted at once", bootstrapSecret(), podDeleted, time.Second, secretAction{Verdict: deleteSecret, Reason: ReasonPodDeleted}},
		{"pod seen deleted, old", bootstrapSecret(), podDeleted, time.Hour, secretAction{Verdict: deleteSecret, Reason: ReasonPodDeleted}},
		{"pod seen deleted, Secret owned by it (FSM's controller): still ours to delete", bootstrapSecret(ownedByPod), podDeleted, time.Second, secretAction{Verdict: deleteSecret, Reason: ReasonPodDeleted}},
		{"pod finished, young: deleted at once", bootstrapSecret(), podFinished, time.Second, secretAction{Verdict: deleteSecret, Reason: ReasonPodFinished}},
		{"pod finished, Secret owned by it (FSM's controller)", bootstrapSecret(ownedByPod), podFinished, time.Hour, secretAction{Verdict: deleteSecret, Reason: ReasonPodFinished}},
		{"pod finished, another mesh's Secret", bootstrapSecret(func(s *corev1.Secret) { s.Labels[appInstanceLabel] = "other" }), podFinished, time.Hour, secretAction{Verdict: ignoreSecret}},
		{"no pod, young: wait for the rest of the grace period", bootstrapSecret(), podNotSeen, 20 * time.Second, secretAction{Verdict: waitForPod, Wait: 40 * time.Second}},
		{"no pod, one second left", bootstrapSecret(), podNotSeen, grace - time.Second, secretAction{Verdict: waitForPod, Wait: time.Second}},
		{"no pod, grace over", bootstrapSecret(), podNotSeen, grace, secretAction{Verdict: deleteSecret, Reason: ReasonNoPod}},
		{"no pod, owned by a pod gone while we were down", bootstrapSecret(ownedByPod), podNotSeen, time.Hour, secretAction{Verdict: deleteSecret, Reason: ReasonNoPod}},
		{"creationTimestamp ahead of our clock (skew): wait", bootstrapSecret(), podNotSeen, -10 * time.Second, secretAction{Verdict: waitForPod, Wait: grace + 10*time.Second}},
		{"being deleted already", bootstrapSecret(deleting), podDeleted, time.Hour, secretAction{Verdict: ignoreSecret}},
		{"another mesh's", bootstrapSecret(func(s *corev1.Secret) { s.Labels[appInstanceLabel] = "other" }), podDeleted, time.Hour, secretAction{Verdict: ignoreSecret}},
		{"not labelled flomesh.io", bootstrapSecret(func(s *corev1.Secret) { delete(s.Labels, appNameLabel) }), podNotSeen, time.Hour, secretAction{Verdict: ignoreSecret}},
		{"no uuid label", bootstrapSecret(func(s *corev1.Secret) { delete(s.Labels, ProxyUUIDLabel) }), podNotSeen, time.Hour, secretAction{Verdict: ignoreSecret}},
		{"name is not its uuid's", bootstrapSecret(func(s *corev1.Secret) { s.Name = BootstrapSecretName("u2") }), podDeleted, time.Hour, secretAction{Verdict: ignoreSecret}},
		// No admission makes an empty uuid, and no pod is indexed by one: such a
		// Secret is someone else's, never an orphan to delete.
		{"empty uuid label, named after the empty uuid", bootstrapSecret(func(s *corev1.Secret) { s.Labels[ProxyUUIDLabel] = ""; s.Name = BootstrapSecretName("") }), podNotSeen, time.Hour, secretAction{Verdict: ignoreSecret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideSecret(tc.secret, "fsm", tc.pod, grace, secretCreated.Add(tc.age))
			if got != tc.want {
				t.Errorf("decideSecret(pod %s, age %s) = %+v, want %+v", tc.pod, tc.age, got, tc.want)
			}
			// The controller decides on the Secret as its cache keeps it.
			cached := cachedAs(t, &corev1.Secret{}, tc.secret.ObjectMeta)
			if got := decideSecret(cached, "fsm", tc.pod, grace, secretCreated.Add(tc.age)); got != tc.want {
				t.Errorf("on the cached metadata %+v: decideSecret(pod %s, age %s) = %+v, want %+v", cached.ObjectMeta, tc.pod, tc.age, got, tc.want)
			}
		})
	}
}

// TestBootstrapVolumeSecret: the Secret a pod mounts is read from the
// bootstrap volume only, whatever other Secret volumes the pod has.
func TestBootstrapVolumeSecret(t *testing.T) {
	secretVolume := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}
	}
	for _, tc := range []struct {
		name    string
		volumes []corev1.Volume
		want    string
	}{
		{"bootstrap volume only", []corev1.Volume{secretVolume(BootstrapVolumeName, "sidecar-bootstrap-config-u1")}, "sidecar-bootstrap-config-u1"},
		{"an app's Secret volume first", []corev1.Volume{secretVolume("tls", "app-tls"), secretVolume(BootstrapVolumeName, "sidecar-bootstrap-config-u1")}, "sidecar-bootstrap-config-u1"},
		{"only an app's Secret volume", []corev1.Volume{secretVolume("tls", "app-tls")}, ""},
		{"bootstrap volume name on an emptyDir", []corev1.Volume{{Name: BootstrapVolumeName}}, ""},
		{"no volumes", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: corev1.PodSpec{Volumes: tc.volumes}}
			if got := bootstrapVolumeSecret(p); got != tc.want {
				t.Errorf("bootstrapVolumeSecret = %q, want %q", got, tc.want)
			}
		})
	}
}

// cacheTransform is CacheByObject's transform for kind's type.
func cacheTransform(tb testing.TB, kind client.Object) func(any) (any, error) {
	tb.Helper()
	for obj, bo := range CacheByObject() {
		if reflect.TypeOf(obj) == reflect.TypeOf(kind) && bo.Transform != nil {
			return bo.Transform
		}
	}
	tb.Fatalf("CacheByObject sets no transform for %T", kind)
	return nil
}

// cachedAs is the metadata-only object of meta as the manager's cache keeps
// a kind (CacheByObject's transform), applied twice (client-go may).
func cachedAs(t *testing.T, kind client.Object, meta metav1.ObjectMeta) *metav1.PartialObjectMetadata {
	t.Helper()
	transform := cacheTransform(t, kind)
	obj := any(&metav1.PartialObjectMetadata{ObjectMeta: *meta.DeepCopy()})
	for range 2 {
		var err error
		if obj, err = transform(obj); err != nil {
			t.Fatalf("transform: %v", err)
		}
	}
	return obj.(*metav1.PartialObjectMetadata)
}

// TestCachedMetadata: the cache keeps of a meshed pod and a bootstrap Secret
// what the controllers and the handler read, and nothing the users and other
// tools size; a full object only loses its managedFields.
func TestCachedMetadata(t *testing.T) {
	deleted := metav1.NewTime(secretCreated.Add(time.Minute))
	full := metav1.ObjectMeta{
		Namespace: "app", Name: "web-x1", GenerateName: "web-", UID: "pod-uid", ResourceVersion: "42", Generation: 3,
		CreationTimestamp: metav1.NewTime(secretCreated), DeletionTimestamp: &deleted,
		Labels: map[string]string{ProxyUUIDLabel: "u1", appNameLabel: appNameValue, appInstanceLabel: "fsm",
			"app": "web", "pod-template-hash": "5d8f9c"},
		Annotations:     map[string]string{"k8s.v1.cni.cncf.io/network-status": strings.Repeat("x", 2048)},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-uid"}},
		Finalizers:      []string{"example.com/hold"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
	}
	kept := func(labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "app", Name: "web-x1", UID: "pod-uid", ResourceVersion: "42",
			CreationTimestamp: metav1.NewTime(secretCreated), DeletionTimestamp: &deleted, Labels: labels}
	}
	for _, tc := range []struct {
		name string
		kind client.Object
		in   metav1.ObjectMeta
		want metav1.ObjectMeta
	}{
		{"pod: its uuid label only", &corev1.Pod{}, full, kept(map[string]string{ProxyUUIDLabel: "u1"})},
		{"Secret: the labels that select and name it", &corev1.Secret{}, full,
			kept(map[string]string{ProxyUUIDLabel: "u1", appNameLabel: appNameValue, appInstanceLabel: "fsm"})},
		{"no labels", &corev1.Pod{}, metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"a": "b"}}, metav1.ObjectMeta{Name: "p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cachedAs(t, tc.kind, tc.in); !equality.Semantic.DeepEqual(got.ObjectMeta, tc.want) {
				t.Errorf("cached metadata\n got %+v\nwant %+v", got.ObjectMeta, tc.want)
			}
		})
	}
	t.Run("full pod: only managedFields go", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: *full.DeepCopy(), Spec: corev1.PodSpec{NodeName: "n1"}}
		want := pod.DeepCopy()
		want.ManagedFields = nil
		got, err := cacheTransform(t, &corev1.Pod{})(pod)
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("transform of a full pod changed more than managedFields: %+v", got)
		}
	})
}

// TestSecretReconciler: the decision applied through a cache and the API
// server. A Secret is deleted (with UID and resourceVersion preconditions)
// only when the API server has no pod with its uuid; a delete the garbage
// collector won is fine; nothing but deletes is ever written, owner
// references least of all.
func TestSecretReconciler(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-x1", UID: "pod-uid", Labels: map[string]string{ProxyUUIDLabel: "u1"}}}
	notFound := apierrors.NewNotFound(corev1.Resource("secrets"), BootstrapSecretName("u1"))
	for _, tc := range []struct {
		name       string
		secret     *corev1.Secret
		cachedPod  bool // the pod is in the cache
		livePod    bool // the pod is on the API server
		liveReborn bool // a pod of the same name with another uuid is on the API server
		sawDeleted bool // a pod DELETE event for uuid u1 arrived, with a deletionTimestamp
		// leftSelection: the DELETE event carried no deletionTimestamp (the
		// pod's uuid label was removed or changed; a tombstone).
		leftSelection bool
		liveNoLabel   bool  // a pod without uuid label mounting the Secret is on the API server
		relabelled    bool  // a pod relabelled u9 (no Secret of its own) mounting the Secret is cached and on the API server
		deleteErr     error // the API server's answer to the delete
		age           time.Duration
		wantGone      bool
		wantReason    string // the metric's reason label that went up
		wantRequeu    time.Duration
		wantMemory    bool // the pod's deletion is still remembered
	}{
		{name: "young, no pod yet: wait for the rest of the grace period", secret: bootstrapSecret(), age: 20 * time.Second, wantRequeu: 41 * time.Second},
		{name: "pod in the cache: kept, nothing written", secret: bootstrapSecret(), cachedPod: true, livePod: true, age: time.Hour},
		{name: "grace over, pod only on the API server (cache lags): kept", secret: bootstrapSecret(), livePod: true, age: 2 * time.Minute},
		{name: "grace over, no pod: deleted", secret: bootstrapSecret(), age: DefaultOrphanGracePeriod, wantGone: true, wantReason: ReasonNoPod},
		{name: "pod seen deleted, 2 s old: deleted at once", secret: bootstrapSecret(), sawDeleted: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "pod seen deleted, owned by it (FSM's controller): deleted", secret: bootstrapSecret(ownedByPod), sawDeleted: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "pod seen deleted but a pod with its uuid is cached: kept", secret: bootstrapSecret(), sawDeleted: true, cachedPod: true, livePod: true, age: 2 * time.Second},
		{name: "pod seen deleted: no API read, the cache that reported the deletion decides", secret: bootstrapSecret(), sawDeleted: true, livePod: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "pod seen deleted, its name reused by a pod with another uuid: deleted", secret: bootstrapSecret(), sawDeleted: true, liveReborn: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "pod seen deleted, the garbage collector was first (NotFound)", secret: bootstrapSecret(ownedByPod), sawDeleted: true, deleteErr: notFound, age: time.Second},
		{name: "pod seen deleted, Secret changed since cached (Conflict): retried on its update", secret: bootstrapSecret(), sawDeleted: true,
			deleteErr: apierrors.NewConflict(corev1.Resource("secrets"), BootstrapSecretName("u1"), nil), age: time.Second, wantMemory: true},
		{name: "grace over, owned by a pod gone while we were down: deleted", secret: bootstrapSecret(ownedByPod), age: time.Hour, wantGone: true, wantReason: ReasonNoPod},
		{name: "uuid label removed, the pod runs on: kept, rechecked", secret: bootstrapSecret(), sawDeleted: true, leftSelection: true, livePod: true, age: 2 * time.Second, wantRequeu: time.Minute},
		{name: "reported without deletionTimestamp, the pod gone: deleted", secret: bootstrapSecret(), sawDeleted: true, leftSelection: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "reported without deletionTimestamp, its name reused by another pod: deleted", secret: bootstrapSecret(), sawDeleted: true, leftSelection: true, liveReborn: true, age: 2 * time.Second, wantGone: true, wantReason: ReasonPodDeleted},
		{name: "grace over, a pod without the uuid label mounts it: kept, rechecked", secret: bootstrapSecret(), liveNoLabel: true, age: time.Hour, wantRequeu: time.Minute},
		{name: "grace over, a pod relabelled to another uuid mounts it: kept, rechecked", secret: bootstrapSecret(), relabelled: true, age: time.Hour, wantRequeu: time.Minute},
		{name: "another mesh's Secret, its pod seen deleted: left", secret: bootstrapSecret(func(s *corev1.Secret) { s.Labels[appInstanceLabel] = "other" }), sawDeleted: true, age: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testScheme(t)
			objs := []client.Object{tc.secret}
			if tc.cachedPod {
				objs = append(objs, pod.DeepCopy())
			}
			mounting := pod.DeepCopy()
			mounting.Spec.Volumes = []corev1.Volume{{Name: BootstrapVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: BootstrapSecretName("u1")}}}}
			if tc.relabelled {
				mounting.Labels[ProxyUUIDLabel] = "u9"
				objs = append(objs, mounting.DeepCopy())
			}
			var writes []string
			var preconditions *metav1.Preconditions
			cl := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
				WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
				WithInterceptorFuncs(interceptor.Funcs{
					Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
						writes = append(writes, "create")
						return c.Create(ctx, o, opts...)
					},
					Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
						writes = append(writes, "update")
						return c.Update(ctx, o, opts...)
					},
					Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
						writes = append(writes, "patch")
						return c.Patch(ctx, o, p, opts...)
					},
					Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
						writes = append(writes, "delete")
						do := &client.DeleteOptions{}
						do.ApplyOptions(opts)
						preconditions = do.Preconditions
						if tc.deleteErr != nil {
							return tc.deleteErr
						}
						return c.Delete(ctx, o, opts...)
					},
				}).Build()
			live := fake.NewClientBuilder().WithScheme(s)
			if tc.livePod {
				live = live.WithObjects(pod.DeepCopy())
			}
			if tc.liveNoLabel {
				delete(mounting.Labels, ProxyUUIDLabel)
			}
			if tc.liveNoLabel || tc.relabelled {
				live = live.WithObjects(mounting)
			}
			if tc.liveReborn {
				reborn := pod.DeepCopy()
				reborn.UID, reborn.Labels[ProxyUUIDLabel] = "pod-uid-2", "u2"
				live = live.WithObjects(reborn)
			}
			r := newSecretReconciler(cl, live.Build(), SecretControllerOptions{MeshName: "fsm", GracePeriod: DefaultOrphanGracePeriod, Logger: testr.New(t)})
			r.now = func() time.Time { return secretCreated.Add(tc.age) }
			key := client.ObjectKeyFromObject(tc.secret)
			if tc.sawDeleted {
				q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
				defer q.ShutDown()
				gone := pod.DeepCopy()
				if !tc.leftSelection {
					gone.DeletionTimestamp = &metav1.Time{Time: secretCreated}
				}
				r.podDeleted(context.Background(), event.DeleteEvent{Object: gone}, q)
				if item, _ := q.Get(); item.NamespacedName != key {
					t.Fatalf("pod deletion queued %v, want %v", item, key)
				}
			}
			before := map[string]float64{}
			for _, reason := range []string{ReasonPodDeleted, ReasonNoPod} {
				before[reason] = testutil.ToFloat64(orphansDeleted.WithLabelValues(reason))
			}

			res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfter != tc.wantRequeu {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.wantRequeu)
			}
			got := &corev1.Secret{}
			err = cl.Get(context.Background(), key, got)
			if gone := apierrors.IsNotFound(err); gone != tc.wantGone {
				t.Fatalf("Secret deleted = %v (%v), want %v", gone, err, tc.wantGone)
			}
			for _, reason := range []string{ReasonPodDeleted, ReasonNoPod} {
				d := testutil.ToFloat64(orphansDeleted.WithLabelValues(reason)) - before[reason]
				if want := map[bool]float64{true: 1}[reason == tc.wantReason]; d != want {
					t.Errorf("fsm_webhooks_injector_orphan_secrets_deleted_total{reason=%q} went up by %v, want %v", reason, d, want)
				}
			}
			for _, w := range writes {
				if w != "delete" {
					t.Errorf("wrote %q; the controller only ever deletes (writes %q)", w, writes)
				}
			}
			if len(writes) > 0 && (preconditions == nil || preconditions.UID == nil || *preconditions.UID != tc.secret.UID || preconditions.ResourceVersion == nil || *preconditions.ResourceVersion == "") {
				t.Errorf("delete preconditions %+v, want the Secret's UID and resourceVersion", preconditions)
			}
			if !tc.wantGone && !apierrors.IsNotFound(err) && len(got.OwnerReferences) != len(tc.secret.OwnerReferences) {
				t.Errorf("owner references %+v, want %+v", got.OwnerReferences, tc.secret.OwnerReferences)
			}
			if _, m := r.sawPodDeleted(key); m != tc.wantMemory {
				t.Errorf("pod deletion remembered after the reconcile = %v, want %v", m, tc.wantMemory)
			}
		})
	}
}

// TestSecretReconcilerForgetsPodsWithoutSecret: a deleted pod whose Secret
// is already gone (or was never ours) leaves nothing behind in memory.
func TestSecretReconcilerForgetsPodsWithoutSecret(t *testing.T) {
	r := newSecretReconciler(fake.NewClientBuilder().WithScheme(testScheme(t)).Build(), fake.NewClientBuilder().WithScheme(testScheme(t)).Build(),
		SecretControllerOptions{MeshName: "fsm", GracePeriod: DefaultOrphanGracePeriod, Logger: testr.New(t)})
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	for _, id := range []string{"a", "b", "c"} {
		r.podDeleted(context.Background(), event.DeleteEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: id, Labels: map[string]string{ProxyUUIDLabel: id}}}}, q)
	}
	// A pod without a uuid (not meshed) is not remembered or queued.
	r.podDeleted(context.Background(), event.DeleteEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "plain"}}}, q)
	if q.Len() != 3 {
		t.Fatalf("%d requests queued, want 3", q.Len())
	}
	for q.Len() > 0 {
		req, _ := q.Get()
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		q.Done(req)
	}
	if n := len(r.deleted); n != 0 {
		t.Errorf("%d pod deletions still remembered: %v", n, r.deleted)
	}
}

// TestSecretReconcilerErrorsNameTheSecret: a failed read is returned with the
// Secret's key, as controller-runtime logs it through plainReconcileLog's
// logger, which carries no request values.
func TestSecretReconcilerErrorsNameTheSecret(t *testing.T) {
	cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewServiceUnavailable("cache stopped")
		},
	}).Build()
	r := newSecretReconciler(cl, cl, SecretControllerOptions{MeshName: "fsm", Logger: testr.New(t)})
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("u1")}
	_, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err == nil || !strings.Contains(err.Error(), key.String()) {
		t.Errorf("Reconcile error %v: want one naming %s", err, key)
	}
}

// TestPlainReconcileLog: one logger, built once with the controller's name,
// whatever the request.
func TestPlainReconcileLog(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	construct := plainReconcileLog(base, "injector-bootstrap-secrets")
	a := construct(&reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "a", Name: "x"}})
	b := construct(nil)
	a.Info("one")
	b.Info("two")
	for _, l := range lines {
		if !strings.Contains(l, `"controller"="injector-bootstrap-secrets"`) || strings.Contains(l, `"a"`) {
			t.Errorf("log line %s: want the controller's name and no request values", l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2", len(lines))
	}
}

// TestPlainReconcileLogDefersValues: values controller-runtime adds per
// reconcile (its reconcileID) reach the sink only with a line logged, with
// the controller's name and the caller as without the deferral.
func TestPlainReconcileLogDefersValues(t *testing.T) {
	var lines []string
	newBase := func() logr.Logger {
		return funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{LogCaller: funcr.All, Verbosity: 1})
	}
	var withValues int
	counted := &countingSink{LogSink: newBase().GetSink(), withValues: &withValues}
	for _, tc := range []struct {
		name string
		base logr.Logger
	}{{"funcr", newBase()}, {"counting", logr.New(counted)}} {
		t.Run(tc.name, func(t *testing.T) {
			lines = nil
			l := plainReconcileLog(tc.base, "injector-bootstrap-writer")(nil)
			before := withValues
			r := l.WithValues("reconcileID", "r-1").WithName("sub")
			if withValues != before {
				t.Errorf("WithValues reached the sink %d times before anything was logged", withValues-before)
			}
			r.V(1).Info("retrying", "secret", "app/x")
			r.V(2).Info("not enabled")
			r.Error(errors.New("boom"), "failed")
			if len(lines) != 2 {
				t.Fatalf("logged %q, want 2 lines", lines)
			}
			for _, want := range []string{"sub ", `"controller"="injector-bootstrap-writer"`, `"reconcileID"="r-1"`, `"file"="controller_test.go"`} {
				for _, line := range lines {
					if !strings.Contains(line, want) {
						t.Errorf("line %s: want %s", line, want)
					}
				}
			}
			if !strings.Contains(lines[0], `"secret"="app/x"`) || !strings.Contains(lines[1], `"error"="boom"`) {
				t.Errorf("lines %q: want each line's own values", lines)
			}
			// A helper logging for its caller (logr's WithCallDepth).
			lines = nil
			_, _, line, _ := runtime.Caller(0)
			logForCaller(r)
			if want := fmt.Sprintf(`"line"=%d`, line+1); len(lines) != 1 || !strings.Contains(lines[0], want) {
				t.Errorf("a helper's line %q: want the caller's %s", lines, want)
			}
		})
	}
	if l := plainReconcileLog(logr.Discard(), "x")(nil); l.GetSink() != nil {
		t.Errorf("over logr.Discard(): sink %T, want none", l.GetSink())
	}
}

// logForCaller logs through l as a helper does: the caller is its caller.
func logForCaller(l logr.Logger) { l.WithCallDepth(1).Info("for the caller") }

// countingSink counts WithValues calls reaching a sink or one derived from it.
type countingSink struct {
	logr.LogSink
	withValues *int
}

func (c *countingSink) WithValues(kv ...any) logr.LogSink {
	*c.withValues++
	return &countingSink{LogSink: c.LogSink.WithValues(kv...), withValues: c.withValues}
}

func (c *countingSink) WithName(name string) logr.LogSink {
	return &countingSink{LogSink: c.LogSink.WithName(name), withValues: c.withValues}
}

// Init does nothing: funcr.New initialised the wrapped sink.
func (c *countingSink) Init(logr.RuntimeInfo) {}

func (c *countingSink) WithCallDepth(depth int) logr.LogSink {
	return &countingSink{LogSink: c.LogSink.(logr.CallDepthLogSink).WithCallDepth(depth), withValues: c.withValues}
}
