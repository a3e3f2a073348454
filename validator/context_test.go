package validator

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/test/ctxtest"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// TestMeshConfigStopsWhenRequestEnds: for a large MeshConfig the
// down-conversion size check (two conversions of the object, and on UPDATE
// two more of the stored one) is most of a write's cost, about a second per
// MB. Once the request's context is done (reviewhttp.AnswerBudget's
// deadline, or the apiserver closed the connection) the handler stops
// before the next conversion with its own error instead of converting for
// nobody; a small object, which needs no conversion, is still answered.
func TestMeshConfigStopsWhenRequestEnds(t *testing.T) {
	big, preset := withDNSTable(t, 3500), presetJSON(t)
	h := NewHandler(Options{FSMNamespace: "fsm-system"})
	send := func(ctx context.Context, op admissionv1.Operation, obj, old []byte) admission.Response {
		return h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.V1alpha3, Kind: meshconfig.Kind},
			Operation: op, Namespace: "fsm-system", Name: "fsm-mesh-config",
			Object: runtime.RawExtension{Raw: obj}, OldObject: runtime.RawExtension{Raw: old},
		}})
	}
	const stopped = "MeshConfig fsm-mesh-config: stopped before checking the size of its old-version views: context canceled"
	for _, tc := range []struct {
		name     string
		checks   int // the context's checks that pass
		op       admissionv1.Operation
		obj, old []byte
	}{
		{"CREATE, done before the first conversion", 0, admissionv1.Create, big, nil},
		{"CREATE, done after the v1alpha1 conversion", 1, admissionv1.Create, big, nil},
		{"UPDATE, done before the stored object's conversions", 2, admissionv1.Update, big, big},
	} {
		resp := send(&ctxtest.Countdown{Context: context.Background(), Left: tc.checks}, tc.op, tc.obj, tc.old)
		if resp.Allowed || resp.Result == nil || resp.Result.Code != 504 || !strings.HasSuffix(resp.Result.Message, stopped) {
			t.Errorf("%s: %+v, want a 504 ending %q", tc.name, resp.Result, stopped)
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	// Denied by the rules before it: the denial, not the stop.
	invalid := withDNSTable(t, 3500)
	invalid = []byte(strings.Replace(string(invalid), `"certKeyBitSize":2048`, `"certKeyBitSize":1`, 1))
	if resp := send(canceled, admissionv1.Create, invalid, nil); resp.Allowed || resp.Result == nil || resp.Result.Code != 422 {
		t.Errorf("a large invalid MeshConfig with the context done: %+v, want its 422 denial", resp.Result)
	}
	if resp := send(canceled, admissionv1.Create, preset, nil); !resp.Allowed {
		t.Errorf("a small MeshConfig with the context done: %+v, want it answered (allowed)", resp.Result)
	}
	// UPDATE, context live: the stored object's conversions run and the
	// size problem it already had ratchets.
	if resp := send(context.Background(), admissionv1.Update, big, big); !resp.Allowed {
		t.Errorf("UPDATE of a MeshConfig already over the limit: %+v, want allowed", resp.Result)
	}
}
