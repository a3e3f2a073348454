package install_test

import (
	"context"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apiextinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// fsmReconcileLabel is FSM's constants.ReconcileLabel: with
// --enable-reconciler (chart value fsm.enableReconciler) FSM's injector and
// controller write it "true" on their webhook configurations and FSM's
// bootstrap on its CRDs, and FSM's reconciler watches only objects carrying
// it.
const fsmReconcileLabel = "flomesh.io/reconcile"

// fsmReconciler stands in for FSM v1.5.1's pkg/reconciler as its injector
// (the mutating configuration), controller (the validating one; it keeps
// running after a takeover) and bootstrap (the CRDs) run it with
// --enable-reconciler. From FSM's source: one informer per kind, selected
// by app.kubernetes.io/name=flomesh.io, flomesh.io/reconcile=true and, for
// the configurations, app.kubernetes.io/instance=<mesh>; an update that
// changes the webhooks (the CRD's spec), or the configuration's app or
// version label, is reverted to the old object's webhooks (spec) and
// labels, conflicts ignored; a delete is answered by creating the old
// object again. It counts what it did.
type fsmReconciler struct {
	mu       sync.Mutex
	reverted map[string]int // successful reverting Updates, by kind
	recreate map[string]int // Creates after a delete event, by kind
}

func (r *fsmReconciler) count(m map[string]int, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m[kind]++
}

func (r *fsmReconciler) counts() (reverted, recreate map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.reverted), maps.Clone(r.recreate)
}

// reconcileKind adds FSM's handlers for one kind to its informer: on an
// update, revert (which puts the old object's watched fields into a copy of
// the new one and says whether they differed) and, if so, update; on a
// delete, create the old object again.
func reconcileKind[T client.Object](t *testing.T, r *fsmReconciler, kind string, inf cache.SharedIndexInformer,
	revert func(old, cur T) bool, update func(T) error, create func(T)) {
	t.Helper()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(o, n any) {
			cur := n.(T).DeepCopyObject().(T)
			if revert(o.(T), cur) && update(cur) == nil {
				r.count(r.reverted, kind)
			}
		},
		DeleteFunc: func(o any) {
			old, ok := o.(T)
			if !ok {
				return
			}
			old = old.DeepCopyObject().(T)
			old.SetResourceVersion("")
			r.count(r.recreate, kind)
			create(old)
		},
	}); err != nil {
		t.Fatal(err)
	}
}

func startFSMReconciler(ctx context.Context, t *testing.T, cs kubernetes.Interface, ax apiextclient.Interface) *fsmReconciler {
	t.Helper()
	r := &fsmReconciler{reverted: map[string]int{}, recreate: map[string]int{}}
	webhooksSel := labels.SelectorFromSet(map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh, fsmReconcileLabel: "true"}).String()
	crdSel := labels.SelectorFromSet(map[string]string{"app.kubernetes.io/name": "flomesh.io", fsmReconcileLabel: "true"}).String()
	cf := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = webhooksSel }))
	xf := apiextinformers.NewSharedInformerFactoryWithOptions(ax, 0, apiextinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = crdSel }))
	labelsChanged := func(app string, l map[string]string) bool {
		return l["app"] != app || l["app.kubernetes.io/version"] != "v1.5.1"
	}
	admr := cs.AdmissionregistrationV1()
	reconcileKind(t, r, "MutatingWebhookConfiguration", cf.Admissionregistration().V1().MutatingWebhookConfigurations().Informer(),
		func(old, cur *admv1.MutatingWebhookConfiguration) bool {
			if reflect.DeepEqual(old.Webhooks, cur.Webhooks) && !labelsChanged("fsm-injector", cur.Labels) {
				return false
			}
			cur.Webhooks, cur.Labels = old.Webhooks, old.Labels
			return true
		},
		func(o *admv1.MutatingWebhookConfiguration) error {
			_, err := admr.MutatingWebhookConfigurations().Update(ctx, o, metav1.UpdateOptions{})
			return err
		},
		func(o *admv1.MutatingWebhookConfiguration) {
			_, _ = admr.MutatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{})
		})
	reconcileKind(t, r, "ValidatingWebhookConfiguration", cf.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer(),
		func(old, cur *admv1.ValidatingWebhookConfiguration) bool {
			if reflect.DeepEqual(old.Webhooks, cur.Webhooks) && !labelsChanged("fsm-controller", cur.Labels) {
				return false
			}
			cur.Webhooks, cur.Labels = old.Webhooks, old.Labels
			return true
		},
		func(o *admv1.ValidatingWebhookConfiguration) error {
			_, err := admr.ValidatingWebhookConfigurations().Update(ctx, o, metav1.UpdateOptions{})
			return err
		},
		func(o *admv1.ValidatingWebhookConfiguration) {
			_, _ = admr.ValidatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{})
		})
	crds := ax.ApiextensionsV1().CustomResourceDefinitions()
	reconcileKind(t, r, "CustomResourceDefinition", xf.Apiextensions().V1().CustomResourceDefinitions().Informer(),
		func(old, cur *apiextv1.CustomResourceDefinition) bool {
			if reflect.DeepEqual(old.Spec, cur.Spec) {
				return false
			}
			cur.Spec, cur.Labels = old.Spec, old.Labels
			return true
		},
		func(o *apiextv1.CustomResourceDefinition) error {
			_, err := crds.Update(ctx, o, metav1.UpdateOptions{})
			return err
		},
		func(o *apiextv1.CustomResourceDefinition) {
			_, _ = crds.Create(ctx, o, metav1.CreateOptions{})
		})
	cf.Start(ctx.Done())
	xf.Start(ctx.Done())
	for typ, ok := range cf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("FSM's reconciler: %v informer never synced", typ)
		}
	}
	for typ, ok := range xf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("FSM's reconciler: %v informer never synced", typ)
		}
	}
	return r
}

// TestTakeoverWithFSMReconciler: FSM run with fsm.enableReconciler puts back
// its webhook configurations and CRD whenever anything else changes them
// (and, for the CRD, flips it back and forth: its revert is itself a change
// it reverts). Its controller, the validating configuration's reconciler,
// keeps running after a takeover; its bootstrap, the CRD's, until step 3.
// A takeover must take each object out of FSM's selection in the write
// that adopts it, so FSM's informer sees it deleted, not changed, and its
// attempt to create it again fails (it exists): the chart labels both
// configurations, and the CRD it ships, flomesh.io/reconcile "false" (Helm
// 4's adoption alone drops FSM's label from the configurations but not from
// the CRD; Helm 3's keeps it on all three). Through both Helm steps of the
// takeover (with Helm 3, and `fsm-webhooks install-crds` after its first
// step, since Helm 3 skips an existing CRD) nothing is reverted, and the
// objects stay as the takeover wrote them.
func TestTakeoverWithFSMReconciler(t *testing.T) {
	for _, h := range []takeoverHelm{helm4, helm3} {
		t.Run(h.name, func(t *testing.T) { takeoverWithFSMReconciler(t, h) })
	}
}

func takeoverWithFSMReconciler(t *testing.T, h takeoverHelm) {
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := env.Client
	root := newFSMRoot(t)
	installFSM(ctx, t, c, root)
	// FSM with --enable-reconciler: its servers and bootstrap label what
	// they write.
	for _, o := range []client.Object{
		&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
		&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
		&apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crdName}},
	} {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				return err
			}
			l := o.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			l["app.kubernetes.io/name"] = "flomesh.io" // as FSM's bootstrap writes its CRDs
			l[fsmReconcileLabel] = "true"
			o.SetLabels(l)
			return c.Update(ctx, o)
		}); err != nil {
			t.Fatal(err)
		}
	}
	ax, err := apiextclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	rec := startFSMReconciler(ctx, t, env.Clientset, ax)

	for i, values := range withCA(twoSteps(), root) {
		step := h.upgrade
		if i == 0 {
			step = h.install
		}
		if err := step(ctx, t, env.KubeConfig, values, true); err != nil {
			t.Fatalf("takeover step %d: %v", i+1, err)
		}
		if i == 0 && h.name == helm3.name {
			// docs/migrate-from-fsm.md: `fsm-webhooks install-crds`.
			if err := chart.ApplyCRDs(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	kinds := []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "CustomResourceDefinition"}
	// Until FSM's informers have seen each adoption (milliseconds; a
	// starved CI machine may take longer), then a while for what they do.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		reverted, recreate := rec.counts()
		seen := 0
		for _, kind := range kinds {
			if reverted[kind]+recreate[kind] > 0 {
				seen++
			}
		}
		if seen == len(kinds) {
			break
		}
	}
	written := adoptedState(ctx, t, c)
	time.Sleep(2 * time.Second)
	reverted, recreate := rec.counts()
	if len(reverted) != 0 {
		t.Errorf("FSM's reconciler reverted the takeover: %v", reverted)
	}
	for _, kind := range kinds {
		if recreate[kind] != 1 {
			t.Errorf("FSM's reconciler saw %s leave its selection %d times, want once (its create of it then fails: it exists)", kind, recreate[kind])
		}
	}
	if now := adoptedState(ctx, t, c); !reflect.DeepEqual(now, written) {
		t.Errorf("the adopted objects changed after the takeover:\n got %v\nwant %v", now, written)
	}
	for kind, a := range written {
		if a.labels[fsmReconcileLabel] == "true" {
			t.Errorf("%s still selected by FSM's reconciler: labels %v", kind, a.labels)
		}
	}
}

type adopted struct {
	resourceVersion string
	labels          map[string]string
}

func adoptedState(ctx context.Context, t *testing.T, c client.Client) map[string]adopted {
	t.Helper()
	out := map[string]adopted{}
	for kind, o := range map[string]client.Object{
		"MutatingWebhookConfiguration/" + mwcName:   &admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
		"ValidatingWebhookConfiguration/" + vwcName: &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
		"CustomResourceDefinition/" + crdName:       &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crdName}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Fatal(err)
		}
		out[kind] = adopted{resourceVersion: o.GetResourceVersion(), labels: o.GetLabels()}
	}
	return out
}
