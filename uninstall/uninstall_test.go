package uninstall

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextfake "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

const ns = "fsm-system"

// recorder logs every write across the three fake clients, in order.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) watch(f interface {
	PrependReactor(verb, resource string, reaction k8stesting.ReactionFunc)
}) {
	f.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			r.mu.Lock()
			r.writes = append(r.writes, a.GetVerb()+" "+a.GetResource().Resource)
			r.mu.Unlock()
		}
		return false, nil, nil
	})
}

type cluster struct {
	cs     *fake.Clientset
	apiext *apiextfake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	meta   *metadatafake.FakeMetadataClient
	rec    *recorder
}

func metaScheme() *runtime.Scheme {
	s := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(s); err != nil {
		panic(err) // a scheme registration conflict is a bug in this file
	}
	return s
}

// partial is a metadata-only object of kind in namespace ns.
func partial(kind, name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, UID: types.UID(name + "-uid"), Labels: labels},
	}
}

// bootstrapSecretOf is mesh's bootstrap Secret of uuid id, as the injector
// labels it.
func bootstrapSecretOf(mesh, id string) *metav1.PartialObjectMetadata {
	return partial("Secret", fsmnames.BootstrapSecretName(id), map[string]string{
		"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh, injector.ProxyUUIDLabel: id,
	})
}

func newCluster() *cluster {
	meshConfig := &unstructured.Unstructured{}
	meshConfig.SetAPIVersion(meshConfigGVR.GroupVersion().String())
	meshConfig.SetKind("MeshConfig")
	meshConfig.SetNamespace(ns)
	meshConfig.SetName(fsmnames.MeshConfigName)
	meshConfig.SetAnnotations(map[string]string{CreatedByAnnotation: CreatedByValue})
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "fsm-webhooks"}}
	c := &cluster{
		cs: fake.NewClientset(
			&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MutatingConfigurationName("fsm")}},
			&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.ValidatingConfigurationName("fsm")}},
			// Another mesh's configuration stays.
			&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MutatingConfigurationName("blue")}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fsm-webhooks"},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: selector}},
		),
		apiext: apiextfake.NewClientset(&apiextv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName},
			Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: &apiextv1.CustomResourceConversion{
				Strategy: apiextv1.WebhookConverter,
				Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
					ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/convert"), CABundle: []byte("ca")}},
			}},
		}),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{meshConfigGVR: "MeshConfigList"}, meshConfig),
		// A running meshed pod's Secret and one whose pod is gone.
		meta: metadatafake.NewSimpleMetadataClient(metaScheme(),
			partial("Pod", "web", map[string]string{injector.ProxyUUIDLabel: "running"}),
			bootstrapSecretOf("fsm", "running"), bootstrapSecretOf("fsm", "gone")),
		rec: &recorder{},
	}
	c.rec.watch(c.cs)
	c.rec.watch(c.apiext)
	c.rec.watch(c.dyn)
	c.rec.watch(c.meta)
	return c
}

// steps is writes with each run of Secret writes sorted: the hand-over
// settles Secrets several at once, in no set order.
func steps(writes []string) []string {
	out := slices.Clone(writes)
	for i := 0; i < len(out); i++ {
		j := i
		for j < len(out) && strings.HasSuffix(out[j], " secrets") {
			j++
		}
		slices.Sort(out[i:j])
		i = max(i, j-1)
	}
	return out
}

// TestRun: the order that cannot deadlock the cluster, what is left, and a
// second run (a retried hook) that finds everything done.
func TestRun(t *testing.T) {
	ctx := context.Background()
	c := newCluster()
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName}
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"delete mutatingwebhookconfigurations",
		"delete validatingwebhookconfigurations",
		"patch customresourcedefinitions",
		"patch deployments",
		"delete secrets", // the Secret whose pod is gone
		"patch secrets",  // the running pod's Secret to the garbage collector
		"delete meshconfigs",
	}
	if !reflect.DeepEqual(steps(c.rec.writes), want) {
		t.Errorf("writes %q, want %q", c.rec.writes, want)
	}
	adm := c.cs.AdmissionregistrationV1()
	if _, err := adm.MutatingWebhookConfigurations().Get(ctx, fsmnames.MutatingConfigurationName("fsm"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the mesh's MutatingWebhookConfiguration is left (err %v)", err)
	}
	if _, err := adm.ValidatingWebhookConfigurations().Get(ctx, fsmnames.ValidatingConfigurationName("fsm"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the mesh's ValidatingWebhookConfiguration is left (err %v)", err)
	}
	if _, err := adm.MutatingWebhookConfigurations().Get(ctx, fsmnames.MutatingConfigurationName("blue"), metav1.GetOptions{}); err != nil {
		t.Errorf("another mesh's configuration: %v", err)
	}
	d, err := c.cs.AppsV1().Deployments(ns).Get(ctx, "fsm-webhooks", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 0 {
		t.Errorf("Deployment %v, err %v; want 0 replicas", d.Spec.Replicas, err)
	}
	crd, err := c.apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil || crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextv1.NoneConverter || crd.Spec.Conversion.Webhook != nil {
		t.Errorf("CRD conversion %+v, err %v; want strategy None without webhook", crd.Spec.Conversion, err)
	}
	if _, err := c.dyn.Resource(meshConfigGVR).Namespace(ns).Get(ctx, fsmnames.MeshConfigName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("MeshConfig left (err %v)", err)
	}

	// Retried: NotFound everywhere is done.
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// TestRunSkips: empty Deployment and MeshConfigName leave both alone.
func TestRunSkips(t *testing.T) {
	c := newCluster()
	if err := run(context.Background(), c.cs, c.apiext, c.dyn, c.meta, Options{Namespace: ns, MeshName: "fsm"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"delete mutatingwebhookconfigurations", "delete validatingwebhookconfigurations", "patch customresourcedefinitions", "delete secrets", "patch secrets"}
	if !reflect.DeepEqual(steps(c.rec.writes), want) {
		t.Errorf("writes %q, want %q", c.rec.writes, want)
	}
}

// TestRunHandBack: handed back to FSM, the mesh's webhook configurations
// stay (FSM's servers answer them through the Services): the servers still
// stop, their Secrets still go to the garbage collector and the CRD's
// conversion is still None, which is what FSM's bootstrap sets.
func TestRunHandBack(t *testing.T) {
	ctx := context.Background()
	c := newCluster()
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", KeepConfigurations: true}
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatal(err)
	}
	want := []string{"patch customresourcedefinitions", "patch deployments", "delete secrets", "patch secrets"}
	if !reflect.DeepEqual(steps(c.rec.writes), want) {
		t.Errorf("writes %q, want %q", c.rec.writes, want)
	}
	adm := c.cs.AdmissionregistrationV1()
	if _, err := adm.MutatingWebhookConfigurations().Get(ctx, fsmnames.MutatingConfigurationName("fsm"), metav1.GetOptions{}); err != nil {
		t.Errorf("MutatingWebhookConfiguration: %v, want kept", err)
	}
	if _, err := adm.ValidatingWebhookConfigurations().Get(ctx, fsmnames.ValidatingConfigurationName("fsm"), metav1.GetOptions{}); err != nil {
		t.Errorf("ValidatingWebhookConfiguration: %v, want kept", err)
	}
}

// TestRunKeepsMeshConfigItDidNotCreate: a MeshConfig without the chart's
// mark (FSM's, or the operator's, found at install) outlives the uninstall;
// so does one whose mark has another value.
func TestRunKeepsMeshConfigItDidNotCreate(t *testing.T) {
	for name, annotations := range map[string]map[string]string{
		"no annotation":    nil,
		"other creator":    {CreatedByAnnotation: "fsm"},
		"other annotation": {"meta.helm.sh/release-name": "fsm-webhooks"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster()
			mcs := c.dyn.Resource(meshConfigGVR).Namespace(ns)
			mc, err := mcs.Get(ctx, fsmnames.MeshConfigName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mc.SetAnnotations(annotations)
			if _, err := mcs.Update(ctx, mc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.rec.writes = nil
			o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName}
			if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
				t.Fatal(err)
			}
			if slices.Contains(c.rec.writes, "delete meshconfigs") {
				t.Errorf("writes %q delete the MeshConfig", c.rec.writes)
			}
			if _, err := mcs.Get(ctx, fsmnames.MeshConfigName, metav1.GetOptions{}); err != nil {
				t.Errorf("MeshConfig gone: %v", err)
			}
		})
	}
}

// TestRunStopsAtFirstFailure: a failed step is reported naming the object,
// and nothing after it runs (the servers must not be stopped while their
// configurations still route to them).
func TestRunStopsAtFirstFailure(t *testing.T) {
	c := newCluster()
	c.cs.PrependReactor("delete", "validatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(admv1.Resource("validatingwebhookconfigurations"), "x", fmt.Errorf("denied"))
	})
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName}
	err := run(context.Background(), c.cs, c.apiext, c.dyn, c.meta, o)
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "deleting ValidatingWebhookConfiguration fsm-validator-mesh-fsm") {
		t.Fatalf("error %v", err)
	}
	for _, w := range c.rec.writes {
		if w == "patch deployments" || w == "patch secrets" || w == "delete secrets" || w == "patch customresourcedefinitions" || w == "delete meshconfigs" {
			t.Errorf("%s ran after the failed step", w)
		}
	}
}

// TestDecideHandOver: what the uninstall does with each bootstrap Secret.
func TestDecideHandOver(t *testing.T) {
	pod := partial("Pod", "web", map[string]string{injector.ProxyUUIDLabel: "u1"})
	cp := partial("Pod", "web-copy", nil) // mounts it too, no uuid label
	both := []*metav1.PartialObjectMetadata{pod, cp}
	one := []*metav1.PartialObjectMetadata{pod}
	secret := func(mutate ...func(*metav1.PartialObjectMetadata)) *metav1.PartialObjectMetadata {
		s := bootstrapSecretOf("fsm", "u1")
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	owner := func(uid types.UID) func(*metav1.PartialObjectMetadata) {
		return func(s *metav1.PartialObjectMetadata) {
			s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "x", UID: uid})
		}
	}
	for _, tc := range []struct {
		name   string
		secret *metav1.PartialObjectMetadata
		pods   []*metav1.PartialObjectMetadata
		want   handOver
	}{
		{"pod runs: owned by it", secret(), one, ownByPod},
		{"pod runs, owned by another (stale) pod: the running pod added", secret(owner("old-uid")), one, ownByPod},
		{"already owned by its pod (FSM's controller)", secret(owner(pod.UID)), one, leaveSecret},
		{"owned by its pod, another pod mounts it too: that one added", secret(owner(pod.UID)), both, ownByPod},
		{"owned by both pods that need it", secret(owner(pod.UID), owner(cp.UID)), both, leaveSecret},
		{"no pod: deleted", secret(), nil, deleteOrphan},
		{"no pod, owned by a pod that is gone: deleted", secret(owner("old-uid")), nil, deleteOrphan},
		{"another mesh's", secret(func(s *metav1.PartialObjectMetadata) { s.Labels["app.kubernetes.io/instance"] = "blue" }), nil, leaveSecret},
		{"name is not its uuid's", secret(func(s *metav1.PartialObjectMetadata) { s.Name = "sidecar-bootstrap-config-u2" }), nil, leaveSecret},
		{"being deleted", secret(func(s *metav1.PartialObjectMetadata) { s.DeletionTimestamp = &metav1.Time{} }), nil, leaveSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideHandOver(tc.secret, "fsm", tc.pods); got != tc.want {
				t.Errorf("decideHandOver = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestConversionReleased(t *testing.T) {
	webhook := func(cc *apiextv1.WebhookClientConfig) *apiextv1.CustomResourceConversion {
		return &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter,
			Webhook: &apiextv1.WebhookConversion{ClientConfig: cc, ConversionReviewVersions: []string{"v1"}}}
	}
	service := func(namespace string) *apiextv1.WebhookClientConfig {
		return &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Namespace: namespace, Name: "fsm-bootstrap"}}
	}
	for _, tc := range []struct {
		name string
		c    *apiextv1.CustomResourceConversion
		want bool
	}{
		{"no stanza", nil, true},
		{"None", &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}, true},
		{"our Service", webhook(service(ns)), false},
		{"another mesh's Service: its converter took it over", webhook(service("other-mesh")), true},
		{"URL: out-of-cluster servers, ours", webhook(&apiextv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/convert")}), false},
		{"Webhook without a client config", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := conversionReleased(tc.c, ns); got != tc.want {
				t.Errorf("conversionReleased = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReleasePatch: the stanza goes to None unless another mesh's converter
// owns it, and a CRD FSM's reconciler watches leaves its selection in the
// same write, also when it reads None (FSM's reconciler flips it).
func TestReleasePatch(t *testing.T) {
	ours := &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
		ClientConfig: &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Namespace: ns, Name: "fsm-bootstrap"}}}}
	other := ours.DeepCopy()
	other.Webhook.ClientConfig.Service.Namespace = "other-mesh"
	none := &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
	fsm := map[string]string{"app.kubernetes.io/name": "flomesh.io", "flomesh.io/reconcile": "true"}
	chart := map[string]string{"app.kubernetes.io/name": "flomesh.io", "flomesh.io/reconcile": "false"}
	const (
		release = `{"spec":{"conversion":{"strategy":"None","webhook":null}}}`
		leave   = `{"metadata":{"labels":{"flomesh.io/reconcile":"false"}},"spec":{"conversion":{"strategy":"None","webhook":null}}}`
	)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		c      *apiextv1.CustomResourceConversion
		want   string // "": no patch
	}{
		{"ours, chart's labels", chart, ours, release},
		{"ours, no labels", nil, ours, release},
		{"ours, FSM's reconciler watches", fsm, ours, leave},
		{"None, FSM's reconciler watches: read mid-flip", fsm, none, leave},
		{"no stanza, FSM's reconciler watches", fsm, nil, leave},
		{"None, chart's labels", chart, none, ""},
		{"no stanza", nil, nil, ""},
		{"another mesh's, FSM's reconciler watches", fsm, other, ""},
		{"another mesh's", chart, other, ""},
		{"reconcile true without FSM's name label: not selected", map[string]string{"flomesh.io/reconcile": "true"}, ours, release},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crd := &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}, Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: tc.c}}
			if got := string(releasePatch(crd, ns)); got != tc.want {
				t.Errorf("releasePatch = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRunReleasesConversionWhileDraining: the hook takes the
// conversion-owner Lease from the converter, sets the stanza to None while
// the servers still run, then stops them; a converter that re-points the
// stanza anyway (one that has not seen the new holder) is undone at the
// next poll while its pod terminates; the Lease is freed at the end.
func TestRunReleasesConversionWhileDraining(t *testing.T) {
	// Bounded: a hook that never releases while the pod terminates never
	// sees it go here.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func(d time.Duration) { ownerSeesHolder = d }(ownerSeesHolder)
	ownerSeesHolder = 10 * time.Millisecond
	c := newCluster()
	podGVR := corev1.SchemeGroupVersion.WithResource("pods")
	crdGVR := apiextv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	server, _ := addServerAndLease(t, c)
	var (
		mu       sync.Mutex
		events   []string
		releases int
		holder   string // as last written
	)
	record := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	// Only a change of holder is an event: the hook renews every
	// leaseRenew, so a run a loaded machine slows past that renews between
	// any two steps.
	c.cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		h := ptr.Deref(a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).Spec.HolderIdentity, "<nil>")
		mu.Lock()
		changed := h != holder
		holder = h
		mu.Unlock()
		if changed {
			record("Lease held by " + h)
		}
		return false, nil, nil
	})
	// The ReplicaSet controller and the kubelet: scaled to zero, the pod
	// terminates, and a converter that missed the Lease re-points the
	// stanza; the pod is gone once the stanza was released again. Each
	// step is recorded before it is made: the hook polls every 100 ms and
	// may record its answer before a goroutine descheduled after its write
	// records the write.
	c.cs.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		p := server.DeepCopy()
		p.DeletionTimestamp = ptr.To(metav1.Now())
		record("pod terminating")
		go func() {
			time.Sleep(100 * time.Millisecond)
			crd, err := c.apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			crd.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter,
				Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
					ClientConfig: &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Namespace: ns, Name: "fsm-bootstrap"}}}}
			record("converter re-pointed")
			if err := c.apiext.Tracker().Update(crdGVR, crd, ""); err != nil {
				t.Error(err)
			}
		}()
		return false, nil, c.cs.Tracker().Update(podGVR, p, ns)
	})
	c.apiext.PrependReactor("patch", "customresourcedefinitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		releases++
		n := releases
		mu.Unlock()
		record(fmt.Sprintf("stanza None %d", n))
		if n == 2 {
			go func() {
				time.Sleep(100 * time.Millisecond)
				record("pod gone")
				if err := c.cs.Tracker().Delete(podGVR, ns, server.Name); err != nil {
					t.Error(err)
				}
			}()
		}
		return false, nil, nil
	})
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", KeepConfigurations: true, ConversionLeaseNamespace: "kube-system"}
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"Lease held by fsm-system/fsm|uninstall-hook",
		"stanza None 1", // before the servers stop
		"pod terminating",
		"converter re-pointed",
		"stanza None 2",
		"pod gone",
		"Lease held by ", // freed: another mesh's converter may take it
	}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
	crd, err := c.apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil || !conversionReleased(crd.Spec.Conversion, ns) {
		t.Errorf("CRD conversion %+v, err %v; want released", crd.Spec.Conversion, err)
	}
}

// TestRunLeavesAnotherMeshsStanza: the stanza points at another mesh's
// converter (it took the Lease over): the hook neither takes the Lease nor
// touches the CRD.
func TestRunLeavesAnotherMeshsStanza(t *testing.T) {
	ctx := context.Background()
	c := newCluster()
	crds := c.apiext.ApiextensionsV1().CustomResourceDefinitions()
	crd, err := crds.Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crd.Spec.Conversion.Webhook.ClientConfig = &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Namespace: "other-mesh", Name: "fsm-bootstrap"}}
	if _, err := crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.cs.Tracker().Add(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other-mesh/fsm|replica-a")},
	}); err != nil {
		t.Fatal(err)
	}
	c.rec.writes = nil
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", KeepConfigurations: true, ConversionLeaseNamespace: "kube-system"}
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatal(err)
	}
	want := []string{"patch deployments", "delete secrets", "patch secrets"}
	if !reflect.DeepEqual(steps(c.rec.writes), want) {
		t.Errorf("writes %q, want %q", c.rec.writes, want)
	}
}

// TestRunFreesTheLeaseWhenStopped: a hook stopped while the servers'
// pods terminate (its timeout, or SIGTERM, which the command turns into
// the same cancellation) frees the conversion-owner Lease on its way out,
// so converters are not locked out for its remaining lease time.
func TestRunFreesTheLeaseWhenStopped(t *testing.T) {
	defer func(d time.Duration) { ownerSeesHolder = d }(ownerSeesHolder)
	ownerSeesHolder = 10 * time.Millisecond
	c := newCluster()
	_, leaseName := addServerAndLease(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The pod never goes: the hook is stopped while it waits.
	c.cs.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.AfterFunc(200*time.Millisecond, cancel)
		return false, nil, nil
	})
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", KeepConfigurations: true, ConversionLeaseNamespace: "kube-system"}
	done := make(chan error, 1)
	go func() { done <- run(ctx, c.cs, c.apiext, c.dyn, c.meta, o) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run returned %v; want the cancellation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
	l, err := c.cs.CoordinationV1().Leases("kube-system").Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, "<nil>"); h != "" {
		t.Errorf("Lease held by %q after the hook stopped; want it freed", h)
	}
}

// addServerAndLease adds a running server pod of the mesh and the
// conversion-owner Lease, held by one of its replicas.
func addServerAndLease(t *testing.T, c *cluster) (*corev1.Pod, string) {
	t.Helper()
	server := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fsm-webhooks-0", Labels: map[string]string{"app": "fsm-webhooks"}}}
	leaseName := webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)
	for _, o := range []runtime.Object{server, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: leaseName},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("fsm-system/fsm|replica-a"), LeaseDurationSeconds: ptr.To[int32](15)},
	}} {
		if err := c.cs.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return server, leaseName
}

// TestRunSaysWhatItDidNotFind: every step counts NotFound as done, so a
// retried hook converges; run by hand (the chart README's fallback) with
// the wrong --fsm-namespace or --mesh-name, the hook found nothing, stopped
// no server, and exited 0 having logged only "Bootstrap Secrets handed
// over" with zero counts, while the servers it was meant to stop kept
// running (and re-registering their webhooks). Each target it does not find
// is now named in the log, so the operator sees what was skipped.
func TestRunSaysWhatItDidNotFind(t *testing.T) {
	c := newCluster()
	var logged []string
	log := funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})
	o := Options{Namespace: "blue-system", MeshName: "green", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName, Log: log}
	if err := run(context.Background(), c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(logged, "\n")
	for _, want := range []string{
		`"blue-system/fsm-webhooks"`,
		`"` + fsmnames.MutatingConfigurationName("green") + `"`,
		`"` + fsmnames.ValidatingConfigurationName("green") + `"`,
		`"blue-system/` + fsmnames.MeshConfigName + `"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("nothing logged names %s, which the hook did not find:\n%s", want, all)
		}
	}
}
