package chart_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The alerts are evaluated by Prometheus's own PromQL engine over series
// shaped as serve exports them: each must fire, for the whole of its `for:`,
// on the condition it names, and stay quiet just short of it. A typo in an
// expression, a wrong comparison, a label the `and on` cannot match or a
// rate window that never fills would each leave an alert that never fires,
// which no render test sees.

const (
	scrape = 30 * time.Second
	// evalStep is how often each alert is evaluated over its `for:`.
	evalStep = 5 * time.Minute
)

// metricSeries is one exported series: its name and labels (namespace is
// added) and its value at each scrape, t from the start of the data.
type metricSeries struct {
	name   string
	labels map[string]string
	value  func(t time.Duration) float64
}

// alertCase is one scenario for an alert: the series over three days, and
// whether the alert must be firing at their end (its condition held at every
// evaluation over its `for:`) or not (it failed at one at least).
type alertCase struct {
	name   string
	series []metricSeries
	fires  bool
}

const day = 24 * time.Hour

func constant(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }

// perSecond is a counter growing at rate per second.
func perSecond(rate float64) func(time.Duration) float64 {
	return func(t time.Duration) float64 { return rate * t.Seconds() }
}

// start is the data's first timestamp: a real epoch, so time() reads like
// a clock.
var start = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// servingCert is a serving certificate's series: left at the data's end
// (3 days), of the given lifetime.
func servingCert(left, lifetime time.Duration) []metricSeries {
	l := map[string]string{"webhook": "injector", "secret": "fsm-webhooks-injector-cert"}
	return []metricSeries{
		{"fsm_webhooks_serving_cert_expiry_seconds", l, func(t time.Duration) float64 { return (left + 3*day - t).Seconds() }},
		{"fsm_webhooks_serving_cert_lifetime_seconds", l, constant(lifetime.Seconds())},
	}
}

func TestAlertsFireOnTheirConditions(t *testing.T) {
	tokenExpiry := func(left time.Duration) func(time.Duration) float64 {
		// The gauge holds a fixed expiry; its distance from time() shrinks.
		return func(time.Duration) float64 { return float64(start.Add(3*day + left).Unix()) }
	}
	requests := func(errPerSecond float64) []metricSeries {
		return []metricSeries{
			{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "patched"}, perSecond(10)},
			{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "error"}, perSecond(errPerSecond)},
			{"fsm_webhooks_requests_total", map[string]string{"webhook": "validator", "result": "allowed"}, perSecond(1)},
		}
	}
	// Every alert's cases end at span = 3 days of data.
	cases := map[string][]alertCase{
		"FSMWebhooksServingCertExpiring": {
			{"decade-long, 29 days left", servingCert(29*day, 3650*day), true},
			{"decade-long, 31 days left", servingCert(31*day, 3650*day), false},
			// Vault's 24h certificates, renewed by 16h: never 30 days
			// left, alerting only once one is past its renewal.
			{"24h lifetime, 4h left", servingCert(4*time.Hour, day), true},
			{"24h lifetime, 7h left", servingCert(7*time.Hour, day), false},
			// A role capping certificates at 2h (renewed by 80 min): not
			// renewed, it must alert before it expires, not only after
			// (the apiserver's TLS handshakes fail then, so no request
			// reaches the servers and no request metric shows it).
			{"2h lifetime, 10m left", servingCert(10*time.Minute, 2*time.Hour), true},
			{"2h lifetime, 35m left", servingCert(35*time.Minute, 2*time.Hour), false},
			{"24h lifetime, renewed every 16h", []metricSeries{
				{"fsm_webhooks_serving_cert_expiry_seconds", map[string]string{"webhook": "injector", "secret": "fsm-webhooks-injector-cert"},
					func(t time.Duration) float64 { return (day - t%(16*time.Hour)).Seconds() }},
				{"fsm_webhooks_serving_cert_lifetime_seconds", map[string]string{"webhook": "injector", "secret": "fsm-webhooks-injector-cert"}, constant(day.Seconds())},
			}, false},
		},
		"FSMWebhooksRootCAExpiring": {
			{"89 days left", []metricSeries{{"fsm_webhooks_root_ca_expiry_seconds", map[string]string{"provider": "tresor", "subject": "CN=fsm-ca", "serial": "1"},
				func(t time.Duration) float64 { return (92*day - t).Seconds() }}}, true},
			{"91 days left", []metricSeries{{"fsm_webhooks_root_ca_expiry_seconds", map[string]string{"provider": "tresor", "subject": "CN=fsm-ca", "serial": "1"},
				func(t time.Duration) float64 { return (94*day - t).Seconds() }}}, false},
		},
		"FSMWebhooksRootRotationStuck": {
			{"NextRootAdded for 3 days", []metricSeries{
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "NextRootAdded"}, constant(1)},
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "Complete"}, constant(0)},
			}, true},
			{"NextRootActive for 3 days", []metricSeries{
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "NextRootActive"}, constant(1)},
			}, true},
			{"Complete", []metricSeries{
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "NextRootAdded"}, constant(0)},
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "Complete"}, constant(1)},
			}, false},
			{"NextRootAdded for 1 day of 3", []metricSeries{
				{"fsm_webhooks_root_rotation_phase", map[string]string{"provider": "tresor", "phase": "NextRootAdded"},
					func(t time.Duration) float64 { return map[bool]float64{true: 1, false: 0}[t > 2*day] }},
			}, false},
		},
		"FSMWebhooksVaultTokenExpiring": {
			{"48h left, not renewing", []metricSeries{
				{"fsm_webhooks_vault_token_expiry_timestamp_seconds", nil, tokenExpiry(48 * time.Hour)},
				{"fsm_webhooks_vault_token_renewing", nil, constant(0)},
			}, true},
			{"48h left, renewing", []metricSeries{
				{"fsm_webhooks_vault_token_expiry_timestamp_seconds", nil, tokenExpiry(48 * time.Hour)},
				{"fsm_webhooks_vault_token_renewing", nil, constant(1)},
			}, false},
			{"100h left, not renewing", []metricSeries{
				{"fsm_webhooks_vault_token_expiry_timestamp_seconds", nil, tokenExpiry(100 * time.Hour)},
				{"fsm_webhooks_vault_token_renewing", nil, constant(0)},
			}, false},
		},
		"FSMWebhooksVaultCAFileInvalid": {
			{"unusable for the last hour", []metricSeries{{"fsm_webhooks_vault_ca_file_valid", nil,
				func(t time.Duration) float64 { return map[bool]float64{true: 0, false: 1}[t > 3*day-time.Hour] }}}, true},
			{"unusable for 5 minutes", []metricSeries{{"fsm_webhooks_vault_ca_file_valid", nil,
				func(t time.Duration) float64 { return map[bool]float64{true: 0, false: 1}[t > 3*day-5*time.Minute] }}}, false},
			{"in use", []metricSeries{{"fsm_webhooks_vault_ca_file_valid", nil, constant(1)}}, false},
		},
		"FSMWebhooksVaultClientCertInvalid": {
			{"unusable for the last hour", []metricSeries{{"fsm_webhooks_vault_client_cert_valid", nil,
				func(t time.Duration) float64 { return map[bool]float64{true: 0, false: 1}[t > 3*day-time.Hour] }}}, true},
			// Far longer than a pair read between the updates of its two
			// files stays refused (until the next poll, 10 s).
			{"unusable for 5 minutes", []metricSeries{{"fsm_webhooks_vault_client_cert_valid", nil,
				func(t time.Duration) float64 { return map[bool]float64{true: 0, false: 1}[t > 3*day-5*time.Minute] }}}, false},
			{"in use", []metricSeries{{"fsm_webhooks_vault_client_cert_valid", nil, constant(1)}}, false},
		},
		"FSMWebhooksAdmissionErrors": {
			{"9% of the injector's requests fail", requests(1), true},
			{"2% fail", requests(0.2), false},
		},
		// A 429 counts as result denied; only the overloaded counter says
		// which ones the injector refused for want of capacity.
		"FSMWebhooksInjectorOverloaded": {
			{"5% of pod admissions refused as overloaded", []metricSeries{
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "patched"}, perSecond(19)},
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "denied"}, perSecond(1)},
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "validator", "result": "allowed"}, perSecond(100)},
				{"fsm_webhooks_injector_overloaded_total", nil, perSecond(1)},
			}, true},
			{"0.5% refused", []metricSeries{
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "patched"}, perSecond(19.9)},
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "denied"}, perSecond(0.1)},
				{"fsm_webhooks_injector_overloaded_total", nil, perSecond(0.1)},
			}, false},
			{"none refused", []metricSeries{
				{"fsm_webhooks_requests_total", map[string]string{"webhook": "injector", "result": "patched"}, perSecond(20)},
				{"fsm_webhooks_injector_overloaded_total", nil, constant(0)},
			}, false},
		},
		"FSMWebhooksCABundleRepairs": {
			{"5 repairs in the last hour", []metricSeries{{"fsm_webhooks_cabundle_repairs_total", map[string]string{"webhook": "injector", "kind": "MutatingWebhookConfiguration"},
				func(t time.Duration) float64 { return float64(max(0, int((t-(3*day-time.Hour))/(10*time.Minute)))) }}}, true},
			{"2 repairs in the last hour", []metricSeries{{"fsm_webhooks_cabundle_repairs_total", map[string]string{"webhook": "injector", "kind": "MutatingWebhookConfiguration"},
				func(t time.Duration) float64 { return float64(max(0, int((t-(3*day-time.Hour))/(25*time.Minute)))) }}}, false},
		},
	}

	pr := mustRender(t, monitoringOn).Find("PrometheusRule", "fsm-webhooks")
	if pr == nil {
		t.Fatal("no PrometheusRule")
	}
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	seen := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			name, expr := rule["alert"].(string), rule["expr"].(string)
			seen[name] = true
			var hold time.Duration
			if f, ok := rule["for"].(string); ok {
				d, err := model.ParseDuration(f)
				if err != nil {
					t.Errorf("%s: for %q: %v", name, f, err)
					continue
				}
				hold = time.Duration(d)
			}
			if len(cases[name]) == 0 {
				t.Errorf("%s: no scenario evaluates it", name)
			}
			for _, c := range cases[name] {
				t.Run(name+"/"+c.name, func(t *testing.T) {
					firing := evalOver(t, engine, load(c.series, 3*day), expr, start.Add(3*day), hold)
					switch {
					case c.fires && firing != len(firingWindow(hold)):
						t.Errorf("fired at %d of the %d evaluations over its for: %s, want all: %s", firing, len(firingWindow(hold)), hold, expr)
					case !c.fires && firing == len(firingWindow(hold)):
						t.Errorf("fired at all %d evaluations over its for: %s, want it quiet: %s", firing, hold, expr)
					}
				})
			}
		}
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("scenario for %s, which the chart does not render", name)
		}
	}
}

// firingWindow is the offsets before the end at which a rule with for: hold
// is evaluated: the end, and every evalStep back to hold.
func firingWindow(hold time.Duration) []time.Duration {
	out := []time.Duration{0}
	for back := evalStep; back <= hold; back += evalStep {
		out = append(out, back)
	}
	return out
}

// evalOver evaluates expr at end and every evalStep back over hold, and
// returns at how many of those it returned a result (the alert's condition
// held).
func evalOver(t *testing.T, engine *promql.Engine, q storage.Queryable, expr string, end time.Time, hold time.Duration) int {
	t.Helper()
	firing := 0
	for _, back := range firingWindow(hold) {
		query, err := engine.NewInstantQuery(context.Background(), q, nil, expr, end.Add(-back))
		if err != nil {
			t.Fatalf("Prometheus does not parse %q: %v", expr, err)
		}
		res := query.Exec(context.Background())
		if res.Err != nil {
			t.Fatalf("evaluating %q: %v", expr, res.Err)
		}
		v, err := res.Vector()
		if err != nil {
			t.Fatalf("%q does not give an instant vector: %v", expr, err)
		}
		for _, s := range v {
			if s.Metric.Get("namespace") != ns {
				t.Errorf("%q fired without the installation's namespace label: %v", expr, s.Metric)
			}
		}
		if len(v) > 0 {
			firing++
		}
		query.Close()
	}
	return firing
}

// load turns the scenario into stored series, one sample per scrape from
// start over span, each labelled with the installation's namespace (as the
// ServiceMonitor's scrape labels it).
func load(series []metricSeries, span time.Duration) storage.Queryable {
	var all []storage.Series
	for _, s := range series {
		m := map[string]string{model.MetricNameLabel: s.name, "namespace": ns, "job": "fsm-webhooks-metrics"}
		for k, v := range s.labels {
			m[k] = v
		}
		var samples []chunks.Sample
		for at := time.Duration(0); at <= span; at += scrape {
			samples = append(samples, floatSample{t: start.Add(at).UnixMilli(), f: s.value(at)})
		}
		all = append(all, storage.NewListSeries(labels.FromMap(m), samples))
	}
	slices.SortFunc(all, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return storage.QueryableFunc(func(int64, int64) (storage.Querier, error) {
		return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var out []storage.Series
			for _, s := range all {
				if matchesAll(s.Labels(), ms) {
					out = append(out, s)
				}
			}
			return &seriesSet{series: out}
		}}, nil
	})
}

func matchesAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// floatSample is one float sample, as chunks.Sample.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }
func (s floatSample) String() string              { return fmt.Sprintf("%g@%d", s.f, s.t) }

// seriesSet iterates a slice of series, sorted (every Select asks for them
// sorted or does not care).
type seriesSet struct {
	series []storage.Series
	next   int
}

func (s *seriesSet) Next() bool                      { s.next++; return s.next <= len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.next-1] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }
