package uninstall

import (
	"context"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apiextinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// startFSMCRDReconciler stands in for FSM v1.5.1's pkg/reconciler as its
// bootstrap runs it with --enable-reconciler (reconciler.CrdInformerKey):
// an informer on CRDs labelled app.kubernetes.io/name=flomesh.io and
// flomesh.io/reconcile=true; an update that changes the spec is reverted to
// the old spec and labels (conflicts ignored), a delete is answered by
// creating the old object again. It returns how many reverts succeeded.
func startFSMCRDReconciler(ctx context.Context, t *testing.T, ax apiextclient.Interface) *atomic.Int32 {
	t.Helper()
	var reverted atomic.Int32
	f := apiextinformers.NewSharedInformerFactoryWithOptions(ax, 0, apiextinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "app.kubernetes.io/name=flomesh.io,flomesh.io/reconcile=true"
	}))
	crds := ax.ApiextensionsV1().CustomResourceDefinitions()
	inf := f.Apiextensions().V1().CustomResourceDefinitions().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(o, n any) {
			old, cur := o.(*apiextv1.CustomResourceDefinition), n.(*apiextv1.CustomResourceDefinition).DeepCopy()
			if reflect.DeepEqual(old.Spec, cur.Spec) {
				return
			}
			cur.Spec, cur.Labels = old.Spec, old.Labels
			if _, err := crds.Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
				reverted.Add(1)
			}
		},
		DeleteFunc: func(o any) {
			if old, ok := o.(*apiextv1.CustomResourceDefinition); ok {
				old = old.DeepCopy()
				old.ResourceVersion = ""
				_, _ = crds.Create(ctx, old, metav1.CreateOptions{})
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("FSM's reconciler: %v informer never synced", typ)
		}
	}
	return &reverted
}

// TestRunStopsFSMsCRDReconcilerFlipping: in a hand-back to an FSM run with
// fsm.enableReconciler, FSM's bootstrap starts (step 1) while our converter
// serves: it labels the CRD flomesh.io/reconcile "true" and sets conversion
// None, our converter puts its stanza back, and FSM's reconciler reverts
// that change, then its own revert, and so on (docs/migrate-from-fsm.md).
// The hook's None is one more change in that chain: unless its write also
// takes the CRD out of FSM's selection, FSM puts the stanza (a Service with
// no converter behind it once ours are gone) back, for good, and every
// read of an old version fails half the time. Through a real apiserver.
func TestRunStopsFSMsCRDReconcilerFlipping(t *testing.T) {
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ax := apiextclient.NewForConfigOrDie(env.Config)
	crds := ax.ApiextensionsV1().CustomResourceDefinitions()
	// FSM's bootstrap, on start, with --enable-reconciler.
	crd, err := crds.Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crd.Labels["flomesh.io/reconcile"] = "true"
	crd.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
	if _, err := crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	reverted := startFSMCRDReconciler(ctx, t, ax)
	// Our converter puts its stanza back.
	crd, err = crds.Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crd.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter,
		Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
			ClientConfig: &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{
				Namespace: "fsm-system", Name: "fsm-bootstrap", Path: ptr.To("/convert"), Port: ptr.To[int32](9443)}}}}
	if _, err := crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // FSM's reconciler at work
	if reverted.Load() == 0 {
		t.Fatal("FSM's reconciler stand-in reverted nothing: the test proves nothing")
	}
	// Step 3 of the hand-back (the chart's hook; no Deployment here).
	o := Options{Namespace: "fsm-system", MeshName: "fsm", KeepConfigurations: true, Log: testr.New(t)}
	if err := Run(ctx, env.Config, o); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	before := reverted.Load()
	var stanza int
	for range 20 {
		crd, err := crds.Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := crd.Spec.Conversion; c != nil && c.Strategy != apiextv1.NoneConverter {
			stanza++
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stanza > 0 || reverted.Load() != before {
		t.Errorf("after the hook: %d of 20 reads found the conversion webhook back, FSM's reconciler reverted %d more times; want conversion None and FSM's reconciler at rest",
			stanza, reverted.Load()-before)
	}
}
