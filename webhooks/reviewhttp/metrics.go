package reviewhttp

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results: the result label of the request metrics, one vocabulary for every
// webhook.
const (
	// ResultAllowed: admitted as sent (the injector's skips).
	ResultAllowed = "allowed"
	// ResultPatched: admitted with a JSON patch (the injector's injections).
	ResultPatched = "patched"
	// ResultWarned: admitted with warnings (what strict policy validation
	// would deny).
	ResultWarned = "warned"
	// ResultDenied: refused for any other reason: a rule's denial (Denied's
	// 400, 403 Forbidden, 422 Invalid), the injector's rate limit (429).
	ResultDenied = "denied"
	// ResultConverted: a ConversionReview answered with Success.
	ResultConverted = "converted"
	// ResultError: the handler failed: an admission answered BadRequest or 5xx
	// (a recovered panic is a 500), a conversion Failure or panic.
	ResultError = "error"
	// ResultBadRequest: refused before the handler: method, content type,
	// size, not a review.
	ResultBadRequest = "bad_request"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_requests_total",
		Help: "Webhook requests by webhook (injector, validator, converter) and result (allowed, patched, warned, denied, converted, error, bad_request).",
	}, []string{"webhook", "result"})
	duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fsm_webhooks_request_duration_seconds",
		Help: "Time from a webhook request's headers to its answer, by webhook and result.",
		// From the validator's ~100 µs to the apiserver's longest webhook
		// timeout (30 s).
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30},
	}, []string{"webhook", "result"})
	inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_requests_in_flight",
		Help: "Webhook requests being answered, by webhook.",
	}, []string{"webhook"})
)

func init() {
	metrics.Registry.MustRegister(requests, duration, inFlight)
}
