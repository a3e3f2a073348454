package converter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// TestCostlyQuantityRefused: a quantity whose parsing costs seconds to
// minutes (1e-9999999 about 1.5 s, one more exponent digit about a minute)
// is refused before the typed decoding parses it, naming the field and the
// value, whether in the object's own resources or in the resources a
// conversion annotation carries. The converter shares the process, and its
// CPU, with pod admission.
func TestCostlyQuantityRefused(t *testing.T) {
	const detail = `must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`
	hub := strings.Replace(v1alpha3Obj, `"spec":{`, `"spec":{"sidecar":{"resources":{"limits":{"cpu":"1e-9999999"}}},`, 1)
	// The annotation's changes put back, where the conversion gives got,
	// the v1alpha3 value was.
	annotated := func(changes string) string {
		o := strings.Replace(v1alpha1Obj, `"metadata":{"name":"a","namespace":"fsm"}`,
			`"metadata":{"name":"a","namespace":"fsm","annotations":{"`+lossless.AnnotationV1Alpha3JSON+`":`+strconv.Quote(changes)+`}}`, 1)
		return strings.Replace(o, `"sidecar":{`, `"sidecar":{"resources":{"limits":{"cpu":"1"}},`, 1)
	}
	for _, tc := range []struct {
		name, desired, obj, want string
	}{
		{"own resources", "config.flomesh.io/v1alpha1", hub,
			`spec.sidecar.resources.limits[cpu]: Invalid value: "1e-9999999": ` + detail},
		{"in a conversion annotation", "config.flomesh.io/v1alpha3",
			annotated(`[{"path":["spec","sidecar","initResources"],"got":{},"was":{"requests":{"memory":"1e-9999999"}}}]`),
			`metadata.annotations[` + lossless.AnnotationV1Alpha3JSON + `]: Invalid value: "1e-9999999": [0].was.requests[memory]: ` + detail},
		{"a single value in a conversion annotation", "config.flomesh.io/v1alpha3",
			annotated(`[{"path":["spec","sidecar","resources","limits","cpu"],"got":"1","was":"1e-9999999"}]`),
			`metadata.annotations[` + lossless.AnnotationV1Alpha3JSON + `]: Invalid value: "1e-9999999": [0].was: ` + detail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := reviewhttp.NewConversion(NewHandler(meshScheme(t), group, logr.Discard()))
			_, review := serve(t, h, "POST", "application/json", reviewBody(t, "1", tc.desired, tc.obj))
			if review.Response.Result.Status != metav1.StatusFailure || !strings.Contains(review.Response.Result.Message, tc.want) {
				t.Fatalf("result %s %q, want a failure naming %q", review.Response.Result.Status, review.Response.Result.Message, tc.want)
			}
		})
	}
}
