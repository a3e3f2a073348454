package meshconfig

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// TestSchemaMessageForQuantity: a v1alpha3-json annotation that
// stores a quantity as the JSON number 1.5 (Go's Quantity accepts it, so
// showsTheSame does not object; the schema's anyOf integer|string refuses
// it) is denied naming the field and its value, not with an internal
// error at spec (kube-openapi's anyOf composite is unpacked).
func TestSchemaMessageForQuantity(t *testing.T) {
	for _, tc := range []struct{ key string }{{"cpu"}, {"example.com/gpu"}} {
		obj := objectJSON(t, V1alpha1, func(h *v1alpha3.MeshConfig) {
			h.Spec.Sidecar.Resources.Limits = corev1.ResourceList{corev1.ResourceName(tc.key): resource.MustParse("1500m"), "memory": resource.MustParse("1Gi")}
			h.Spec.Sidecar.Resources.Requests = corev1.ResourceList{corev1.ResourceName(tc.key): resource.MustParse("1500m")}
		}, map[string]string{
			lossless.AnnotationV1Alpha3JSON: `[{"path":["spec","sidecar","resources","limits","` + tc.key + `"],"was":1.5,"got":"1500m"}]`})
		r := Validate(V1alpha1, obj)
		var ann string
		for _, m := range messages(r.Errors) {
			if strings.HasPrefix(m, "metadata.annotations[") {
				ann = m
			}
		}
		if ann == "" {
			t.Fatalf("%s: not denied at the annotation: %q", tc.key, messages(r.Errors))
		}
		if strings.Contains(ann, "Internal error") {
			t.Errorf("%s: a schema refusal reported as an internal error: %s", tc.key, ann)
		}
		if want := "spec.sidecar.resources.limits." + tc.key + ": Invalid value: 1.5: "; !strings.Contains(ann, want) {
			t.Errorf("%s: %s\ndoes not name the field and the value: %q", tc.key, ann, want)
		}
	}
}
