// Package reviewhttptest reads the request metrics of reviewhttp in the
// tests of the handlers it serves.
package reviewhttptest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Requests is fsm_webhooks_requests_total{webhook, result} now: 0 until
// such a request was counted.
func Requests(t testing.TB, webhook, result string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "fsm_webhooks_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "webhook") == webhook && label(m, "result") == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
