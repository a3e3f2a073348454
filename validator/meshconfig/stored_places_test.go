package meshconfig

import (
	"testing"
)

// TestConversionAnnotationErrorPlaces: a problem a conversion annotation
// brings into the v1alpha3 object a v1alpha2 write is stored as is named at
// the annotation when v1alpha3-fields holds the value (its keys matched as
// the converter's encoding/json matches them), else at its place in the
// stored object, naming the annotations applied.
func TestConversionAnnotationErrorPlaces(t *testing.T) {
	const (
		fieldsKey = `"conversion.flomesh.io/v1alpha3-fields":`
		jsonKey   = `"conversion.flomesh.io/v1alpha3-json":`
	)
	for _, tc := range []struct {
		name, annotations, want string
	}{{
		name:        "a key the converter matches case-insensitively",
		annotations: fieldsKey + `"{\"Ingress\":{\"type\":\"Bogus\"}}"`,
		want: hubAnn + `.ingress.type: Unsupported value: "Bogus": supported values: "LoadBalancer", "NodePort"` +
			` (stored as spec.ingress.type in v1alpha3)`,
	}, {
		name:        "a value only the exact-JSON annotation puts back",
		annotations: jsonKey + `"[{\"path\":[\"spec\",\"ingress\"],\"was\":{\"type\":\"LoadBalancer\",\"http\":{\"bind\":0}}}]"`,
		want: `spec.ingress.http.bind: Invalid value: 0: should be greater than or equal to 1` +
			` (in the v1alpha3 object this is stored as, with annotation conversion.flomesh.io/v1alpha3-json applied)`,
	}, {
		name: "under a section v1alpha3-fields holds only in part",
		annotations: fieldsKey + `"{\"ingress\":{\"type\":\"LoadBalancer\"}}",` +
			jsonKey + `"[{\"path\":[\"spec\",\"ingress\",\"http\",\"bind\"],\"was\":0,\"got\":80}]"`,
		want: `spec.ingress.http.bind: Invalid value: 0: should be greater than or equal to 1` +
			` (in the v1alpha3 object this is stored as, with annotations conversion.flomesh.io/v1alpha3-fields and conversion.flomesh.io/v1alpha3-json applied)`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			obj := `{"apiVersion":"config.flomesh.io/v1alpha2","kind":"MeshConfig","metadata":{"name":"m","annotations":{` + tc.annotations +
				`}},"spec":{"traffic":{"interceptionMode":"PodLevel","serviceAccessMode":"mixed"}}}`
			got := messages(Validate(V1alpha2, []byte(obj)).Errors)
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("errors %q, want exactly\n%q", got, tc.want)
			}
		})
	}
}
