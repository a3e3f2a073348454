package injector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// `fsm namespace add` and `fsm namespace remove` (FSM v1.5.1 cmd/cli) as
// the namespace patches they send: add sets the label and enables
// injection in one patch; remove drops the label, flomesh.io/ignore, the
// injection and metrics annotations.
func fsmNamespaceAdd(mesh string) []byte {
	return []byte(`{"metadata":{"labels":{"` + fsmnames.MonitoredByLabel + `":"` + mesh + `"},` +
		`"annotations":{"` + injector.SidecarInjectionAnnotation + `":"enabled"}}}`)
}

var fsmNamespaceRemove = []byte(`{"metadata":{"labels":{"` + fsmnames.MonitoredByLabel + `":null,"` + fsmnames.IgnoreLabel + `":null},` +
	`"annotations":{"` + injector.SidecarInjectionAnnotation + `":null,"flomesh.io/metrics":null}}}`)

// TestAdmissionOnALaggingNamespaceCache: the injector's namespace informer
// lags the apiserver (its watch delivers nothing after its list:
// testenv.StalledWatches), and the apiserver, which matched its
// namespaceSelector on the namespace as it is now, calls it for a pod. The
// pod must be decided on the namespace as it is now, not as the cache last
// had it:
//   - `fsm namespace add` just before the pod (the cache has it unlabelled),
//     or moving it from another mesh (the cache has the other mesh's label):
//     the cache contradicts the namespaceSelector, so it is read live;
//   - a namespace deleted and re-created under the same name (CI, a
//     `kubectl replace` of a namespace manifest, a GitOps re-sync): the
//     cache still has the old one, Terminating, with its own annotations.
//     The apiserver never admits a create in a Terminating namespace
//     (NamespaceLifecycle runs before the webhooks), so that cache entry is
//     stale too. Decided on it, the new namespace's pod was admitted
//     unmeshed (the old one disabled injection) or meshed against its
//     namespace's word (the old one enabled it).
func TestAdmissionOnALaggingNamespaceCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := startCoreEnv(t, fsmNamespace)
	c := env.Client
	monitored := map[string]string{fsmnames.MonitoredByLabel: meshName}
	injection := func(v string) map[string]string { return map[string]string{injector.SidecarInjectionAnnotation: v} }

	// Each namespace as the cache lists it, then as the pod finds it.
	type namespaceCase struct {
		name                    string
		labels, annotations     map[string]string // as listed
		recreate                bool              // deleted before the list (Terminating), created again as now*
		patch                   []byte            // else applied after the list
		nowLabels, nowAnnotated map[string]string
		injected                bool
	}
	cases := []namespaceCase{
		{name: "fsm namespace add", patch: fsmNamespaceAdd(meshName), injected: true},
		{name: "moved from another mesh", labels: map[string]string{fsmnames.MonitoredByLabel: "other"}, annotations: injection("enabled"),
			patch: fsmNamespaceAdd(meshName), injected: true},
		{name: "recreated enabling injection", labels: monitored, annotations: injection("disabled"), recreate: true,
			nowLabels: monitored, nowAnnotated: injection("enabled"), injected: true},
		{name: "recreated disabling injection", labels: monitored, annotations: injection("enabled"), recreate: true,
			nowLabels: monitored, nowAnnotated: injection("disabled")},
	}
	nsName := func(tc namespaceCase) string { return "lag-" + strings.ReplaceAll(tc.name, " ", "-") }
	for _, tc := range cases {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(tc), Labels: tc.labels, Annotations: tc.annotations}}); err != nil {
			t.Fatal(err)
		}
		if tc.recreate {
			// envtest runs no namespace controller: the namespace stays
			// Terminating until recreateNamespace finalizes it.
			if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(tc)}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The injector's namespace cache lists now and never hears of a change.
	nsCache := laggingNamespaceCache(ctx, t, env)
	h, err := injector.NewHandler(injector.Options{
		Client: c, Namespaces: nsCache, Issuer: newTresor(ctx, t, env.Clientset, 4),
		MeshName: meshName, FSMNamespace: fsmNamespace,
	})
	if err != nil {
		t.Fatal(err)
	}
	registerInjector(ctx, t, c, h, "injector-lagging-namespaces-test")
	injectedNamespace(ctx, t, c, "lag-ready")

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := nsName(tc)
			if tc.recreate {
				recreateNamespace(ctx, t, env, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: tc.nowLabels, Annotations: tc.nowAnnotated}})
			} else if err := c.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, client.RawPatch(types.MergePatchType, tc.patch)); err != nil {
				t.Fatal(err)
			}
			p := pod("web", ns)
			createInFreshNamespace(ctx, t, c, p)
			id := p.Labels[injector.ProxyUUIDLabel]
			secrets := bootstrapSecrets(t, ctx, c, ns)
			switch {
			case tc.injected && (id == "" || len(secrets) != 1):
				t.Fatalf("pod carries %s=%q, %d bootstrap Secrets in %s: want it injected (the namespace as it is now)", injector.ProxyUUIDLabel, id, len(secrets), ns)
			case !tc.injected && (id != "" || len(secrets) != 0):
				t.Fatalf("pod carries %s=%q, %d bootstrap Secrets in %s: want it left alone (the namespace as it is now disables injection)", injector.ProxyUUIDLabel, id, len(secrets), ns)
			}
		})
	}
}

// laggingNamespaceCache is a namespace cache that lists now and never hears
// of a change (testenv.StalledWatches), running until ctx ends.
func laggingNamespaceCache(ctx context.Context, t *testing.T, env *testenv.Env) cache.Cache {
	t.Helper()
	nsCache, err := cache.New(testenv.StalledWatches(env.Config), cache.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nsCache.GetInformer(ctx, &corev1.Namespace{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = nsCache.Start(ctx) }()
	if !nsCache.WaitForCacheSync(ctx) {
		t.Fatal("namespace cache did not sync")
	}
	return nsCache
}

// TestWriterOnALaggingNamespaceCache: `fsm namespace add`, then a pod at
// once, whose Secret the writer controller writes (the controller writer
// here; the admission writer's hand-offs under load take the same path).
// The admission reads the namespace live (its cache contradicts the
// namespaceSelector: TestAdmissionOnALaggingNamespaceCache), but the
// writer read the same lagging cache, found the namespace out of the mesh
// and told the pod so with a BootstrapSecretNotWritten Warning, false: the
// Secret waited for the cache to catch up (here, stalled, for ever). It
// must confirm with the API server before reporting, and write the Secret.
func TestWriterOnALaggingNamespaceCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	env := startCoreEnv(t, fsmNamespace)
	c := env.Client
	const ns = "writer-lag"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	nsCache := laggingNamespaceCache(ctx, t, env)
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: time.Minute, Logger: log})
	h, err := injector.NewHandler(injector.Options{
		Client: c, Pods: mgr.GetCache(), Namespaces: nsCache, Issuer: newTresor(ctx, t, env.Clientset, 4),
		MeshName: meshName, FSMNamespace: fsmNamespace, Logger: log, Recorder: recorderIf(true, mgr),
		Pending: injector.NewPendingSecrets(time.Minute), SecretWriter: injector.SecretWriterController,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, Logger: log}); err != nil {
		t.Fatal(err)
	}
	startManager(ctx, t, mgr, cancel)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	registerInjector(ctx, t, c, h, "injector-writer-lagging-namespace-test")
	injectedNamespace(ctx, t, c, "writer-lag-ready")

	if err := c.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, client.RawPatch(types.MergePatchType, fsmNamespaceAdd(meshName))); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	eventually(t, 30*time.Second, "a pod injected after fsm namespace add", func() (bool, error) {
		p = pod("web", ns)
		if err := c.Create(ctx, p); err != nil {
			return false, err
		}
		if p.Labels[injector.ProxyUUIDLabel] != "" {
			return true, nil
		}
		// The apiserver's namespace lister had not caught up: not called.
		return false, c.Delete(ctx, p, client.GracePeriodSeconds(0))
	})
	key := client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
	written := false
	// A hang guard (the stalled cache never catches up): the controller
	// writer's hand-off and write take seconds on a loaded machine.
	for deadline := time.Now().Add(30 * time.Second); !written && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		err := c.Get(ctx, key, &corev1.Secret{})
		if client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		written = err == nil
	}
	if !written {
		t.Errorf("bootstrap Secret %s not written: the writer took its lagging cache's word that namespace %s is out of the mesh", key, ns)
	}
	evs := &eventsv1.EventList{}
	if err := c.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.Reason == injector.EventBootstrapSecretNotWritten {
			t.Errorf("false Warning on pod %s: %s: %s", ev.Regarding.Name, ev.Reason, ev.Note)
		}
	}
}

// recreateNamespace finalizes the Terminating namespace of want's name (as
// the namespace controller does once it is empty), waits until it is gone
// and creates want.
func recreateNamespace(ctx context.Context, t *testing.T, env *testenv.Env, want *corev1.Namespace) {
	t.Helper()
	old, err := env.Clientset.CoreV1().Namespaces().Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if old.DeletionTimestamp == nil {
		t.Fatalf("namespace %s is not Terminating", want.Name)
	}
	old.Spec.Finalizers = nil
	if _, err := env.Clientset.CoreV1().Namespaces().Finalize(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "namespace "+want.Name+" to be gone", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: want.Name}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err := env.Client.Create(ctx, want); err != nil {
		t.Fatal(err)
	}
}

// createInFreshNamespace creates p, retrying while the apiserver's own
// namespace lister still has p's namespace as it was before it was deleted
// and created again (NamespaceLifecycle: "being terminated").
func createInFreshNamespace(ctx context.Context, t *testing.T, c client.Client, p *corev1.Pod) {
	t.Helper()
	eventually(t, 30*time.Second, "pod "+p.Name+" created in "+p.Namespace, func() (bool, error) {
		err := c.Create(ctx, p)
		if err != nil && strings.Contains(err.Error(), "being terminated") {
			return false, nil
		}
		return err == nil, err
	})
}

// TestSecretsOfANamespaceLeavingTheMesh: `fsm namespace remove` while meshed
// pods run leaves their sidecars running on their bootstrap Secrets, so the
// Secret controller, which never reads a namespace's membership, keeps each
// Secret as long as its pod exists (past grace periods and with the
// namespace moved to another mesh), and deletes it when the pod goes; a
// namespace added back gets its new pods injected.
func TestSecretsOfANamespaceLeavingTheMesh(t *testing.T) {
	const grace = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	env := startCoreEnv(t, fsmNamespace)
	c := env.Client
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	startManager(ctx, t, mgr, cancel)
	h := tresorInjector(ctx, t, env, 2)
	registerInjector(ctx, t, c, h, "injector-membership-test")
	const ns = "leaves-mesh"
	injectedNamespace(ctx, t, c, ns)

	meshed := pod("web", ns)
	if err := c.Create(ctx, meshed); err != nil {
		t.Fatal(err)
	}
	id := meshed.Labels[injector.ProxyUUIDLabel]
	if id == "" {
		t.Fatal("pod not injected")
	}
	secretKey := client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	for _, step := range []struct {
		what  string
		patch []byte
	}{
		{"fsm namespace remove", fsmNamespaceRemove},
		{"fsm namespace add --mesh-name other", fsmNamespaceAdd("other")},
	} {
		if err := c.Patch(ctx, nsObj, client.RawPatch(types.MergePatchType, step.patch)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * grace)
		if err := c.Get(ctx, secretKey, &corev1.Secret{}); err != nil {
			t.Fatalf("after %s, the running pod's bootstrap Secret: %v", step.what, err)
		}
	}

	// Added back: new pods are injected again, the old one keeps its Secret.
	if err := c.Patch(ctx, nsObj, client.RawPatch(types.MergePatchType, fsmNamespaceRemove)); err != nil {
		t.Fatal(err)
	}
	if err := c.Patch(ctx, nsObj, client.RawPatch(types.MergePatchType, fsmNamespaceAdd(meshName))); err != nil {
		t.Fatal(err)
	}
	again := pod("web-2", ns)
	eventually(t, 30*time.Second, "a new pod injected after fsm namespace add", func() (bool, error) {
		p := again.DeepCopy()
		if err := c.Create(ctx, p); err != nil {
			return false, err
		}
		if p.Labels[injector.ProxyUUIDLabel] != "" {
			return true, nil
		}
		// The apiserver's namespace lister had not caught up: not called.
		return false, c.Delete(ctx, p, client.GracePeriodSeconds(0))
	})

	if err := c.Delete(ctx, meshed, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the deleted pod's bootstrap Secret to go", func() (bool, error) {
		err := c.Get(ctx, secretKey, &corev1.Secret{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}
