package injector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results of an admission (the result label).
const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultDenied   = "denied"
	resultError    = "error"
)

var (
	admissionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_admissions_total",
		Help: "Pod admissions handled by the sidecar injector, by result and skip reason.",
	}, []string{"result", "skip_reason"})
	admissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fsm_webhooks_injector_admission_duration_seconds",
		Help:    "Time the sidecar injector took per pod admission, by result.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
	}, []string{"result"})
	registerOnce sync.Once
)

// registerMetrics adds the injector's metrics to controller-runtime's
// registry, once per process.
func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(admissionsTotal, admissionDuration)
	})
}
