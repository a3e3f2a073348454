package meshconfig

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
)

const costlyDetail = `must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`

// TestCostlyQuantityOldVersions: a quantity whose parsing costs seconds
// (1e-9999999 about 1.5 s each time it is parsed, one more exponent digit
// about a minute) is refused in an old version's write and in the data a
// conversion annotation carries, both of which are decoded as a typed
// MeshConfig (the v1alpha3 object such a write is stored as), before that
// decoding parses it. The validator shares the process, and its CPU, with
// pod admission.
func TestCostlyQuantityOldVersions(t *testing.T) {
	v1alpha2 := func(annotations string) []byte {
		return []byte(`{"apiVersion":"config.flomesh.io/v1alpha2","kind":"MeshConfig","metadata":{"name":"fsm-mesh-config","namespace":"fsm-system"` +
			annotations + `},"spec":{"sidecar":{"resources":{"limits":{"cpu":"1"}}}}}`)
	}
	for _, tc := range []struct {
		name string
		obj  []byte
		want string
	}{
		{"own resources", []byte(strings.Replace(string(v1alpha2("")), `"cpu":"1"`, `"cpu":"1e-9999999"`, 1)),
			`spec.sidecar.resources.limits[cpu]: Invalid value: "1e-9999999": ` + costlyDetail},
		{"conversion annotation", v1alpha2(`,"annotations":{"` + lossless.AnnotationV1Alpha3JSON + `":` +
			strconv.Quote(`[{"path":["spec","sidecar","resources","limits","cpu"],"got":"1","was":"1e-9999999"}]`) + `}`),
			`metadata.annotations[` + lossless.AnnotationV1Alpha3JSON + `]: Invalid value: "1e-9999999": [0].was: ` + costlyDetail},
		{"fields annotation", v1alpha2(`,"annotations":{"` + lossless.AnnotationV1Alpha3Fields + `":` +
			strconv.Quote(`{"sidecar":{"initResources":{"requests":{"memory":"1e-9999999"}}}}`) + `}`),
			`metadata.annotations[` + lossless.AnnotationV1Alpha3Fields + `]: Invalid value: "1e-9999999": sidecar.initResources.requests[memory]: ` + costlyDetail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Validate(V1alpha2, tc.obj)
			if got := messages(r.Errors); !equal(got, []string{tc.want}) {
				t.Errorf("errors %q, want %q", got, tc.want)
			}
			// Kept unchanged in an update it still denies: the rest of the
			// object went unchecked.
			r = ValidateUpdate(V1alpha2, tc.obj, tc.obj)
			if got := messages(r.Errors); !equal(got, []string{tc.want}) {
				t.Errorf("update keeping it: errors %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStoredErrorKeyAgreesWithSameStoredError: ratchet.Split only asks
// sameStoredError about errors with the same storedErrorKey, so the key
// must be equal wherever sameStoredError holds.
func TestStoredErrorKeyAgreesWithSameStoredError(t *testing.T) {
	p := field.NewPath("spec", "traffic", "outboundIPRangeExclusionList")
	errs := field.ErrorList{
		field.Invalid(p.Index(0), "x", "must be a CIDR"), field.Invalid(p.Index(3), "x", "must be a CIDR"),
		field.Invalid(p.Index(0), "y", "must be a CIDR"), field.Invalid(p.Index(0), "x", "same as [2]"),
		field.Invalid(p.Index(1), "x", "same as [5]"), field.Invalid(p.Index(0), 70000, "too big"),
		field.Invalid(p.Index(0), int64(70000), "too big"), field.Invalid(p.Index(0), json.Number("70000"), "too big"),
		field.Invalid(p.Index(0), []string{"a"}, "list"), field.Invalid(p.Index(1), []string{"a"}, "list"),
		field.Invalid(p.Index(1), []string{"b"}, "list"), field.Required(p, "x"), field.Invalid(p, field.OmitValueType{}, "x"),
	}
	for _, a := range errs {
		for _, b := range errs {
			if sameStoredError(a, b) && storedErrorKey(a) != storedErrorKey(b) {
				t.Errorf("sameStoredError(%v, %v) but keys %q and %q differ", a, b, storedErrorKey(a), storedErrorKey(b))
			}
		}
	}
}
