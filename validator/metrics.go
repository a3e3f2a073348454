package validator

import (
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// decisions counts outcomes by kind; controller-runtime's webhook server
// already measures request counts and latency per path.
var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "fsm_validator_decisions_total",
	Help: "Validating webhook decisions by resource kind, operation and result (allowed, warned, denied, error).",
}, []string{"kind", "operation", "result"})

func init() {
	metrics.Registry.MustRegister(decisions)
}

func observe(kind string, op admissionv1.Operation, resp admission.Response) {
	result := "allowed"
	switch {
	case resp.Allowed && len(resp.Warnings) > 0:
		// Allowed with warnings: what strict policy validation would deny
		// (or a stored problem); watch it before turning strict on.
		result = "warned"
	case resp.Allowed:
	case resp.Result != nil && resp.Result.Code >= 500:
		result = "error"
	case resp.Result != nil && resp.Result.Code == 400:
		result = "error"
	default:
		result = "denied"
	}
	if !knownKind(kind) {
		kind = "unknown" // bounded label cardinality
	}
	decisions.WithLabelValues(kind, string(op), result).Inc()
}
