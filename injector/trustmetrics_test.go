package injector

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestTrustFailureCountersStartAtZero: every step of
// fsm_webhooks_injector_bootstrap_trust_failures_total is exported at 0 from
// the start, as the chart README promises of every failure counter: a
// series that appears with its first failure at 1 is a failure increase()
// and rate() never see, so an alert on them missed the only failure of a
// rotation (a certificate that could not be re-issued once).
func TestTrustFailureCountersStartAtZero(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "fsm_webhooks_injector_bootstrap_trust_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" {
					have[l.GetValue()] = true
				}
			}
		}
	}
	// The steps the metric's help names.
	for _, step := range []string{"list", "invalid", "issue", "update"} {
		if !have[step] {
			t.Errorf("fsm_webhooks_injector_bootstrap_trust_failures_total{step=%q} not exported before a failure", step)
		}
	}
}
