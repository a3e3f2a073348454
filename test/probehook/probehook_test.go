package probehook

import (
	"context"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func TestHandler(t *testing.T) {
	for _, tc := range []struct {
		name        string
		object      string
		wantAllowed bool
		wantCode    int32
		wantMessage string
	}{
		{name: "labelled deny=true", object: `{"metadata":{"labels":{"deny":"true"}}}`, wantCode: http.StatusForbidden, wantMessage: Message},
		{name: "other label value", object: `{"metadata":{"labels":{"deny":"false"}}}`, wantAllowed: true, wantCode: http.StatusOK},
		{name: "no labels", object: `{"metadata":{"name":"cm"}}`, wantAllowed: true, wantCode: http.StatusOK},
		{name: "not JSON", object: `{`, wantCode: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := Handler().Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				Object: runtime.RawExtension{Raw: []byte(tc.object)},
			}})
			if resp.Allowed != tc.wantAllowed || resp.Result == nil || resp.Result.Code != tc.wantCode {
				t.Fatalf("allowed %v result %+v, want allowed %v code %d", resp.Allowed, resp.Result, tc.wantAllowed, tc.wantCode)
			}
			if tc.wantMessage != "" && resp.Result.Message != tc.wantMessage {
				t.Errorf("message %q, want %q", resp.Result.Message, tc.wantMessage)
			}
		})
	}
}
