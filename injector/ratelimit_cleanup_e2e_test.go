package injector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/go-logr/logr/testr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestRateLimitedSeriesGoneWithDeletedNamespace: the series of
// fsm_webhooks_injector_rate_limited_total of a namespace refused by the
// limit stayed exported after the namespace was deleted, for the life of
// the process (a namespace a CI run creates and deletes, one more series
// each). Through a real apiserver and the manager's Namespace informer, as
// serve registers it: the namespace is deleted and finalized (the namespace
// controller's part), and its series goes.
func TestRateLimitedSeriesGoneWithDeletedNamespace(t *testing.T) {
	const nsName = "ci-limited-gone"
	env := startCoreEnv(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName, Labels: map[string]string{fsmnames.MonitoredByLabel: meshName},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	h, err := injector.NewHandler(injector.Options{
		Client: env.Client, Namespaces: env.Client, Issuer: ca, MeshName: meshName, FSMNamespace: fsmNamespace,
		NamespaceLimit: injector.NamespaceLimit{PerSecond: 0.001, Burst: 1}, Logger: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Client.Scheme(), Logger: testr.New(t), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ForgetDeletedNamespaces(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)

	var last admission.Response
	for i := range 2 { // the burst, then one refused
		raw, err := json.Marshal(pod(fmt.Sprintf("web-%d", i), nsName))
		if err != nil {
			t.Fatal(err)
		}
		last = h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: types.UID(fmt.Sprintf("uid-%d", i)), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: nsName, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		}})
	}
	if last.Result == nil || last.Result.Code != http.StatusTooManyRequests {
		t.Fatalf("second pod: %+v, want refused with 429", last.Result)
	}
	if _, found := counterSum(t, "fsm_webhooks_injector_rate_limited_total", map[string]string{"namespace": nsName}); !found {
		t.Fatalf("no fsm_webhooks_injector_rate_limited_total series for %s", nsName)
	}

	if err := env.Client.Delete(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	// No namespace controller here: empty the finalizers as it does once the
	// namespace's objects are gone.
	eventually(t, settleWithin, "namespace "+nsName+" to be gone", func() (bool, error) {
		cur, err := cs.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		cur.Spec.Finalizers = nil
		if _, err := cs.CoreV1().Namespaces().Finalize(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return false, err
		}
		return false, nil
	})
	eventually(t, settleWithin, "the deleted namespace's rate-limited series to go", func() (bool, error) {
		_, found := counterSum(t, "fsm_webhooks_injector_rate_limited_total", map[string]string{"namespace": nsName})
		return !found, nil
	})
}
