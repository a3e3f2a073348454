package converter

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
)

// TestUnparsableQuantityNamed: the CRD's quantity pattern admits a
// fractional exponent (1e1.5), which resource.ParseQuantity refuses, so a
// stored object holding one (written before the validator refused it) fails
// every conversion to the old versions. The error must name the field and
// the value, not only the parser's regular expression, in the object's
// resources and in a conversion annotation's data alike.
func TestUnparsableQuantityNamed(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	for _, tc := range []struct {
		name, desired string
		obj           []byte
		want          string
	}{
		{"stored v1alpha3 object, to v1alpha1", "v1alpha1", presetWith(t, func(spec map[string]any) {
			spec["sidecar"].(map[string]any)["resources"] = map[string]any{"limits": map[string]any{"cpu": "1e1.5"}}
		}), `spec.sidecar.resources.limits[cpu]: Invalid value: "1e1.5": must be a quantity such as 500m, 2 or 64Mi: quantities must match`},
		{"stored v1alpha3 object, to v1alpha2", "v1alpha2", presetWith(t, func(spec map[string]any) {
			spec["sidecar"].(map[string]any)["initResources"] = map[string]any{"requests": map[string]any{"memory": "2e-0.5"}}
		}), `spec.sidecar.initResources.requests[memory]: Invalid value: "2e-0.5"`},
		{"v1alpha1 object's annotation data, to v1alpha3", "v1alpha3", []byte(`{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
			`"` + lossless.AnnotationV1Alpha3Fields + `":"{\"sidecar\":{\"healthcheckResources\":{\"limits\":{\"cpu\":\"1e1.5\"}}}}"}},"spec":{}}`),
			`metadata.annotations[` + lossless.AnnotationV1Alpha3Fields + `]: Invalid value: "1e1.5": sidecar.healthcheckResources.limits[cpu]: must be a quantity`},
	} {
		_, msg := convertOne(t, h, group+"/"+tc.desired, tc.obj)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: message %q, want it to contain %q", tc.name, msg, tc.want)
		}
	}
}
