package rules

import (
	"strconv"
	"strings"
	"testing"
)

// TestCostlyQuantity: only quantities over CheckQuantityCost's bounds
// are found, in limits and requests maps and in an annotation's JSON; long
// strings elsewhere, and the usual quantities, are not.
func TestCostlyQuantity(t *testing.T) {
	long := strings.Repeat("7", 80)
	obj := func(spec, annotations string) []byte {
		return []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` + annotations + `}},"spec":{` + spec + `}}`)
	}
	for _, tc := range []struct {
		name string
		obj  []byte
		want string
	}{
		{"usual", obj(`"sidecar":{"resources":{"limits":{"cpu":"2","memory":"1Gi"},"requests":{"cpu":"1e-3"}}}`,
			`"a":"[{\"path\":[\"spec\"],\"was\":{\"limits\":{\"cpu\":\"500m\"}}}]","b":"10.0.0.1"`), ""},
		{"long strings elsewhere", obj(`"sidecar":{"sidecarImage":"`+long+`","limits":"x"},"x":{"limits":{"n":1e99999}}`,
			`"a":"`+long+`","b":"{\"script\":\"x`+long+`\"}"`), ""},
		{"not JSON", []byte(`{"spec":`), ""},
		{"limits", obj(`"sidecar":{"resources":{"limits":{"cpu":"1e-1000"}}}`, ``),
			`spec.sidecar.resources.limits[cpu]: Invalid value: "1e-1000": must be a quantity`},
		{"requests, too long", obj(`"sidecar":{"initResources":{"requests":{"memory":"`+long+`"}}}`, ``),
			`spec.sidecar.initResources.requests[memory]: Invalid value: "` + long + `": must be a quantity`},
		{"conversion annotation", obj(``, `"conversion.flomesh.io/v1alpha3-json":`+strconv.Quote(`{"k":["1","2e99999999"]}`)),
			`metadata.annotations[conversion.flomesh.io/v1alpha3-json]: Invalid value: "2e99999999": k[1]: must be a quantity`},
		// Never decoded as a MeshConfig: another tool's data is its own.
		{"another annotation", obj(``, `"x.io/a":`+strconv.Quote(`{"k":["1","2e99999999","`+long+`"]}`)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := CostlyQuantity(tc.obj)
			switch {
			case tc.want == "" && e != nil:
				t.Errorf("found %v, want nothing", e)
			case tc.want != "" && (e == nil || !strings.HasPrefix(e.Error(), tc.want)):
				t.Errorf("found %v, want %q", e, tc.want)
			}
		})
	}
}

// TestMayHoldCostlyQuantity: the byte scan that spares CostlyQuantity's
// decoding passes every value CheckQuantityCost refuses for its cost, also
// spelt with JSON escapes, and rules out an ordinary object.
func TestMayHoldCostlyQuantity(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{`{"spec":{"sidecar":{"sidecarImage":"registry.example.com/flomesh/pipy:1.5.12-with-a-rather-long-tag-name-beyond-64-characters","resources":{"limits":{"cpu":"2","memory":"1e3Mi"}}}}}`, false},
		{`{"limits":{"cpu":"1e-1000"}}`, true},
		{`{"limits":{"cpu":"1E+1000"}}`, true},
		{`{"limits":{"cpu":"` + strings.Repeat("7", 65) + `"}}`, true},
		{`{"limits":{"cpu":"1\u0065-99999999"}}`, true},
		{`{"a":"{\"was\":\"2e99999999\"}"}`, true},
		// Cut short (the request body as sent, not yet decoded): the
		// scan must not read past the end.
		{`{"a":"x\`, false},
		{`{"a":"1e`, false},
	} {
		if got := mayHoldCostlyQuantity([]byte(tc.raw)); got != tc.want {
			t.Errorf("mayHoldCostlyQuantity(%s) = %t, want %t", tc.raw, got, tc.want)
		}
	}
}
