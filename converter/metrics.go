package converter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const (
	resultSuccess    = "success"
	resultFailure    = "failure"
	resultBadRequest = "bad_request"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_conversion_requests_total",
		Help: "ConversionReview requests by result (success, failure: a Failure response, bad_request: unusable HTTP request).",
	}, []string{"result"})
	duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fsm_webhooks_conversion_duration_seconds",
		Help:    "Time to answer a ConversionReview, by result.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"result"})
	panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_conversion_panics_total",
		Help: "Conversions that panicked (answered with a Failure).",
	})
)

func init() {
	metrics.Registry.MustRegister(requests, duration, panics)
}

func observe(result string, start time.Time) {
	requests.WithLabelValues(result).Inc()
	duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
}
