package validator

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/validator/policy"
)

// TestTrafficTargetRuleFollowsFlag: the TrafficTarget namespace rule
// applies only with ValidateTrafficTarget (FSM's --validate-traffic-target);
// off, a TrafficTarget whose destination is elsewhere is admitted.
func TestTrafficTargetRuleFollowsFlag(t *testing.T) {
	const obj = `{"metadata":{"name":"tt","namespace":"a"},"spec":{"destination":{"kind":"ServiceAccount","name":"sa","namespace":"b"}}}`
	gvk := metav1.GroupVersionKind{Group: "access.smi-spec.io", Version: "v1alpha3", Kind: policy.KindTrafficTarget}
	for _, on := range []bool{true, false} {
		h := NewHandler(Options{ValidateTrafficTarget: on})
		resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: gvk, Operation: admissionv1.Create, Namespace: "a", Name: "tt",
			Object: runtime.RawExtension{Raw: []byte(obj)},
		}})
		const want = "The traffic target namespace (a) must match spec.Destination.Namespace (b)"
		switch {
		case on && (resp.Allowed || resp.Result == nil || resp.Result.Message != want):
			t.Errorf("flag on: allowed %v, result %+v; want denied with %q", resp.Allowed, resp.Result, want)
		case !on && !resp.Allowed:
			t.Errorf("flag off: denied: %+v", resp.Result)
		}
	}
}
