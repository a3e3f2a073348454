package injector

import "testing"

// TestMetricsInvalidValueMessage: namespace annotation
// flomesh.io/metrics with an invalid value in upper case.
//
// FSM v1.5.1 (pkg/injector/metrics.go IsMetricsEnabled) lower-cases the
// value before the switch (metrics = strings.ToLower(metrics)) and its error
// prints the lower-cased value: `Invalid value specified for annotation
// "flomesh.io/metrics": on`; so does ours (it printed the value as written
// until a review against FSM's source).
func TestMetricsInvalidValueMessage(t *testing.T) {
	_, err := mutateWith(t, simplePod(nil), map[string]string{MetricsAnnotation: "ON"}, DefaultSettings(), testMesh)
	want := `Invalid value specified for annotation "flomesh.io/metrics": on`
	if err == nil || err.Error() != want {
		t.Errorf("FSM v1.5.1 (pkg/injector/metrics.go IsMetricsEnabled) denies with %q; ours: %v", want, err)
	}
}
