package meshconfig

import (
	"encoding/json"
	"testing"
)

// TestBigIntegerFalseSchemaWarning: the stored object is read with integers
// as int64, as the apiserver reads it (kube-openapi takes a float64 above
// 2^53 for a non-integer), so 2^60 in spec.sidecar.maxDataPlaneConnections
// (type integer, no format, no maximum), which a v1alpha3 create accepts,
// draws no "cannot be created again" warning.
func TestBigIntegerFalseSchemaWarning(t *testing.T) {
	big := json.Number("1152921504606846976") // 2^60, fits int64 and Go int
	hub := edit(t, presetWithout(t), map[string]any{"sidecar.maxDataPlaneConnections": big})
	// The same object written as v1alpha3 is fine by every rule.
	if r := Validate(V1alpha3, hub); len(r.Errors) != 0 {
		t.Fatalf("setup: v1alpha3 errors %q", messages(r.Errors))
	}
	for _, version := range []string{V1alpha1, V1alpha2} {
		obj := readAs(t, version, hub)
		r := Validate(version, obj)
		if len(r.Errors) != 0 {
			t.Errorf("%s: denied %q", version, messages(r.Errors))
		}
		if w := schemaWarning(r.Warnings); w != "" {
			t.Errorf("%s: false schema warning: %s", version, w)
		}
	}
}
