package meshconfig

// Helpers of the FSM chart tests (fsmchart_admitted_test.go): each builds the MeshConfig
// FSM v1.5.1's own install writes for some chart values (FSM's chart
// charts/fsm/templates/preset-mesh-config.yaml renders the values into the
// ConfigMap preset-mesh-config; cmd/fsm-bootstrap/fsm-bootstrap.go
// buildDefaultMeshConfig decodes it into FSM's v1alpha3 Go types and CREATEs
// it as config.flomesh.io/v1alpha3) and asserts our validator admits it.
// FSM v1.5.1 has no MeshConfig validating webhook: only its CRD schema
// (cmd/fsm-bootstrap/crds/config.flomesh.io_meshconfigs.yaml) applies, and
// each value used here passes it.

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// fsmPreset is the MeshConfig FSM's install creates with the chart's
// default values (the recorded reference, after FSM's Go round trip).
func fsmPreset(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "fsm-reference", "meshconfig-preset-v1alpha3.yaml"))
	if err != nil {
		t.Fatalf("FSM reference preset: %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// fsmChartAdmits fails the test when the validator denies FSM's preset with
// sets applied (what bootstrap's CREATE would send for those chart values).
func fsmChartAdmits(t *testing.T, values string, sets ...kv) {
	t.Helper()
	base := fsmPreset(t)
	if r := Validate(V1alpha3, build(t, base)); len(r.Errors) != 0 {
		t.Fatalf("test setup: FSM's default preset denied: %v", r.Errors)
	}
	r := Validate(V1alpha3, build(t, fsmPreset(t), sets...))
	if len(r.Errors) != 0 {
		t.Errorf("FSM's bootstrap CREATE for chart values %s is denied:\n%v", values, r.Errors.ToAggregate())
	}
}
