package injector

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// Annotations read by the injector (FSM names unless noted).
const (
	SidecarInjectionAnnotation         = "flomesh.io/sidecar-injection"
	MetricsAnnotation                  = "flomesh.io/metrics"
	SidecarImageAnnotation             = "flomesh.io/sidecar-image"
	OutboundPortExclusionAnnotation    = "flomesh.io/outbound-port-exclusion-list"
	InboundPortExclusionAnnotation     = "flomesh.io/inbound-port-exclusion-list"
	OutboundIPRangeExclusionAnnotation = "flomesh.io/outbound-ip-range-exclusion-list"
	OutboundIPRangeInclusionAnnotation = "flomesh.io/outbound-ip-range-inclusion-list"
	HoldApplicationAnnotation          = "flomesh.io/hold-application-until-proxy-starts"
	GracefulExitAnnotation             = "flomesh.io/graceful-exit-until-downstream-ends"
	SidecarResourceLimitsPrefix        = "flomesh.io/sidecar-resource-limits-"
	SidecarResourceRequestsPrefix      = "flomesh.io/sidecar-resource-requests-"
	// SidecarNativeAnnotation ("true"/"false", pod beats namespace) runs the
	// sidecar as a Kubernetes native sidecar: an init container with
	// restartPolicy Always, so Jobs complete and app containers start after
	// the proxy. Not in FSM.
	SidecarNativeAnnotation = "flomesh.io/sidecar-native"

	prometheusScrapeAnnotation = "prometheus.io/scrape"
	prometheusPortAnnotation   = "prometheus.io/port"
	prometheusPathAnnotation   = "prometheus.io/path"
)

// sidecarResourceNames are the resources the resource annotations may name.
var sidecarResourceNames = []string{"cpu", "memory", "storage", "ephemeral-storage"}

// parseBoolAnnotation accepts FSM's spellings, case-insensitively. The
// error is FSM's message; where is appended to it (" (on the namespace)"
// for the namespace's annotation, else ""): a namespace's bad value refuses
// pods whose own annotations hold no such value, and the message must say
// where to look.
func parseBoolAnnotation(key, value, where string) (bool, error) {
	switch strings.ToLower(value) {
	case "enabled", "yes", "true":
		return true, nil
	case "disabled", "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("invalid annotation value for key %q: %s%s%s", key, value, where, unseen(value))
}

// unseen quotes a refused value whose whitespace or control characters the
// unquoted message (FSM's words) hides: "true\n" (a YAML block scalar, a
// template's line end) would otherwise read as the valid "true".
func unseen(value string) string {
	if strings.TrimSpace(value) == value && strings.IndexFunc(value, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return ""
	}
	return fmt.Sprintf(" (the value is %q: remove the whitespace or control characters)", value)
}

// onNamespace is parseBoolAnnotation's where for a namespace's annotation,
// in the words of the other annotations' errors.
const onNamespace = " (on the namespace)"

// boolOverride returns the pod's, else the namespace's, value of the annotation
// key, else def.
func boolOverride(key string, podAnn, nsAnn map[string]string, def bool) (bool, error) {
	if v, ok := podAnn[key]; ok {
		return parseBoolAnnotation(key, v, "")
	}
	if v, ok := nsAnn[key]; ok {
		return parseBoolAnnotation(key, v, onNamespace)
	}
	return def, nil
}

// stringOverride returns the first non-empty value of key on the pod, then the
// namespace.
func stringOverride(key string, podAnn, nsAnn map[string]string) string {
	if v := strings.TrimSpace(podAnn[key]); v != "" {
		return v
	}
	return strings.TrimSpace(nsAnn[key])
}

// parseQuantityAnnotation parses a resource annotation, naming it (and, with
// where, the namespace it is on) on error, with the wording of the
// MeshConfig's quantity rule.
func parseQuantityAnnotation(key, value, where string) (resource.Quantity, error) {
	q, err := rules.ParseQuantity(strings.TrimSpace(value))
	if errors.Is(err, rules.ErrCostlyQuantity) {
		return resource.Quantity{}, fmt.Errorf("invalid quantity %q specified for annotation %q%s: %s", value, key, where, rules.QuantityDetail)
	}
	if err != nil {
		return resource.Quantity{}, fmt.Errorf("invalid quantity %q specified for annotation %q%s: must be a quantity such as 500m, 2 or 64Mi", value, key, where)
	}
	return q, nil
}

// metricsEnabled reads the namespace's metrics annotation; an empty value
// is unset, as FSM reads it.
func metricsEnabled(nsAnn map[string]string) (bool, error) {
	v, ok := nsAnn[MetricsAnnotation]
	if !ok || v == "" {
		return false, nil
	}
	// Lower-cased in the message too, as FSM v1.5.1 writes it.
	lower := strings.ToLower(v)
	switch lower {
	case "enabled", "yes", "true":
		return true, nil
	case "disabled", "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("Invalid value specified for annotation %q: %s%s", MetricsAnnotation, lower, unseen(v)) //nolint:staticcheck // FSM's message, capitalised as users know it
}
