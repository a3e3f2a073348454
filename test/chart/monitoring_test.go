package chart_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	// Every package of the binary that registers metrics, so the registry
	// below holds what `fsm-webhooks serve` exports.
	"github.com/flomesh-io/fsm-webhooks/certs/certmetrics"
	_ "github.com/flomesh-io/fsm-webhooks/certs/keypool"
	_ "github.com/flomesh-io/fsm-webhooks/certs/vault"
	_ "github.com/flomesh-io/fsm-webhooks/injector"
	_ "github.com/flomesh-io/fsm-webhooks/internal/version"
	_ "github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

const monitoringOn = `
fsm:
  webhooks:
    monitoring:
      serviceMonitor: {enabled: true, labels: {release: kube-prometheus}}
      prometheusRule: {enabled: true}
      grafanaDashboard: {enabled: true}
`

// probe is a collector describing one metric name, to ask the registry
// whether it already knows that name: registering a descriptor whose name is
// taken (with other help or labels) fails, a free name succeeds.
type probe struct{ d *prometheus.Desc }

func (p probe) Describe(ch chan<- *prometheus.Desc) { ch <- p.d }
func (probe) Collect(chan<- prometheus.Metric)      {}

// registered says whether the binary's registry exports name; a
// _bucket/_sum/_count series counts only as part of a histogram family.
func registered(name string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && histograms()[base] {
			return true
		}
	}
	p := probe{prometheus.NewDesc(name, "probe of the chart test", nil, nil)}
	if err := metrics.Registry.Register(p); err != nil {
		return true
	}
	metrics.Registry.Unregister(p)
	return false
}

// histograms are the histogram families the binary exports. A vector shows
// in Gather only once it has a series, so the binary's two histogram
// producers (admission requests, certificate issuance) are exercised once.
var histograms = sync.OnceValue(func() map[string]bool {
	certmetrics.ObserveIssuance("chart-test", time.Now(), nil)
	h := reviewhttp.NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})).Named("chart-test")
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), req)
	fams, err := metrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	out := map[string]bool{}
	for _, f := range fams {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			out[f.GetName()] = true
		}
	}
	return out
})

var (
	promqlStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlNumbers   = regexp.MustCompile(`\b[0-9][0-9.]*(e[+-]?[0-9]+|[a-z]+)?\b`)
	promqlIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlOperators = []string{"and", "or", "unless", "bool", "offset"}
)

// metricNames are the series an expression selects: identifiers that are
// not functions, keywords, label names or numbers.
func metricNames(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, "")
	e = promqlRanges.ReplaceAllString(e, "")
	e = promqlGrouping.ReplaceAllString(e, "")
	e = promqlNumbers.ReplaceAllString(e, "")
	var out []string
	for _, m := range promqlIdent.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") || slices.Contains(promqlOperators, m) {
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestMetricNamesParse(t *testing.T) {
	got := metricNames(`sum by (le, webhook) (rate(a_bucket{x=~"y|z"}[5m])) / on (w) b > 0.5 and c offset 5m`)
	if !slices.Equal(got, []string{"a_bucket", "b", "c"}) {
		t.Fatalf("metric names %v", got)
	}
}

// TestMonitoringOffByDefault: nothing needing the Prometheus Operator's
// CRDs or Grafana renders unless asked for.
func TestMonitoringOffByDefault(t *testing.T) {
	r := mustRender(t, "")
	for _, o := range r.All() {
		if o.GetKind() == "ServiceMonitor" || o.GetKind() == "PrometheusRule" || o.GetName() == "fsm-webhooks-metrics" || strings.HasPrefix(o.GetName(), "fsm-webhooks-dashboard") {
			t.Errorf("%s %s rendered by default", o.GetKind(), o.GetName())
		}
	}
}

// TestServiceMonitor: the ServiceMonitor scrapes the metrics port of the
// servers' pods through a Service selecting exactly them.
func TestServiceMonitor(t *testing.T) {
	r := mustRender(t, monitoringOn)
	sm, svc, dep := r.Find("ServiceMonitor", "fsm-webhooks"), r.Find("Service", "fsm-webhooks-metrics"), r.Find("Deployment", "fsm-webhooks")
	if sm == nil || svc == nil || dep == nil {
		t.Fatal("ServiceMonitor, metrics Service or Deployment missing")
	}
	if sm.GetLabels()["release"] != "kube-prometheus" {
		t.Errorf("ServiceMonitor labels %v lack the configured release label", sm.GetLabels())
	}
	smSel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range smSel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has %q", k, v, svc.GetLabels()[k])
		}
	}
	svcSel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	for k, v := range svcSel {
		if podLabels[k] != v {
			t.Errorf("metrics Service selects %s=%s, the servers' pods have %q", k, v, podLabels[k])
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(eps) != 1 || len(ports) != 1 || eps[0].(map[string]any)["port"] != "metrics" ||
		ports[0].(map[string]any)["name"] != "metrics" || ports[0].(map[string]any)["targetPort"] != "metrics" {
		t.Errorf("endpoints %v, Service ports %v: want the metrics port", eps, ports)
	}
}

// TestAlertsUseExportedMetrics: every alert of the PrometheusRule exists as
// the issue asks (serving cert and root expiry, admission errors, caBundle
// repairs) and selects only series the binary's registry holds, all named
// fsm_webhooks_*.
func TestAlertsUseExportedMetrics(t *testing.T) {
	r := mustRender(t, monitoringOn)
	pr := r.Find("PrometheusRule", "fsm-webhooks")
	if pr == nil {
		t.Fatal("no PrometheusRule")
	}
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	alerts := map[string]string{}
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, rule := range rules {
			m := rule.(map[string]any)
			alerts[m["alert"].(string)] = m["expr"].(string)
		}
	}
	for _, want := range []string{"FSMWebhooksServingCertExpiring", "FSMWebhooksRootCAExpiring", "FSMWebhooksVaultTokenExpiring", "FSMWebhooksVaultCAFileInvalid", "FSMWebhooksVaultClientCertInvalid", "FSMWebhooksAdmissionErrors", "FSMWebhooksInjectorOverloaded", "FSMWebhooksCABundleRepairs"} {
		if _, ok := alerts[want]; !ok {
			t.Errorf("alert %s missing", want)
		}
	}
	for name, expr := range alerts {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", name, expr)
		}
		for _, m := range names {
			if !strings.HasPrefix(m, "fsm_webhooks_") || !registered(m) {
				t.Errorf("%s uses %s, which fsm-webhooks does not export", name, m)
			}
		}
		if !strings.Contains(expr, `namespace="`+ns+`"`) {
			t.Errorf("%s: %q is not limited to this installation's namespace", name, expr)
		}
	}
}

// TestDashboardUsesExportedMetrics: the ConfigMap carries the dashboard as
// valid JSON, and every panel query selects only exported series.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	r := mustRender(t, monitoringOn)
	cm := r.Find("ConfigMap", "fsm-webhooks-dashboard-fsm")
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard", cm.GetLabels())
	}
	raw, _, _ := unstructured.NestedString(cm.Object, "data", "fsm-webhooks.json")
	var dash dashboardJSON
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("dashboard without panels")
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricNames(tg.Expr) {
				used[strings.TrimSuffix(m, "_bucket")] = true
				if !strings.HasPrefix(m, "fsm_webhooks_") || !registered(m) {
					t.Errorf("panel %q uses %s, which fsm-webhooks does not export", p.Title, m)
				}
			}
		}
	}
	for _, m := range []string{"fsm_webhooks_root_ca_expiry_seconds", "fsm_webhooks_root_rotation_phase", "fsm_webhooks_cert_issuance_duration_seconds",
		"fsm_webhooks_injector_orphan_secrets_deleted_total", "fsm_webhooks_build_info", "fsm_webhooks_serving_cert_expiry_seconds"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	// The registry check itself rejects a name the binary does not export.
	if registered("fsm_webhooks_no_such_metric_total") {
		t.Error("registered() accepts an unknown metric")
	}
}
