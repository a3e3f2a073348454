package validator

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// TestMeshConfigDeleteGuardsOnlyTheMeshs: only the mesh's own MeshConfig
// (its name in the mesh namespace) is protected from DELETE; any other is
// deleted without a look at its namespace (the handler has no Reader here,
// so a read would fail the request).
func TestMeshConfigDeleteGuardsOnlyTheMeshs(t *testing.T) {
	h := NewHandler(Options{FSMNamespace: "fsm-system", MeshConfigName: "fsm-mesh-config"})
	for _, tc := range []struct{ namespace, name string }{
		{"fsm-system", "fsm-mesh-config-backup"},
		{"apps", "fsm-mesh-config"},
	} {
		resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "u",
			Kind:      metav1.GroupVersionKind{Group: meshconfig.Group, Version: "v1alpha3", Kind: meshconfig.Kind},
			Operation: admissionv1.Delete, Namespace: tc.namespace, Name: tc.name,
		}})
		if !resp.Allowed {
			t.Errorf("DELETE %s/%s refused: %+v", tc.namespace, tc.name, resp.Result)
		}
	}
}
