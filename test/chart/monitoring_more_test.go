package chart_test

// Dashboard and rule cases found by a review of the monitoring objects:
// each failed on the chart before it was fixed.

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmetrics"
)

type dashboardJSON struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			IncludeAll bool   `json:"includeAll"`
			Current    struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func renderDashboard(t *testing.T, mesh string) dashboardJSON {
	t.Helper()
	r := mustRender(t, monitoringOn+"  meshName: "+mesh+"\n")
	cm := r.Find("ConfigMap", "fsm-webhooks-dashboard-"+mesh)
	if cm == nil {
		t.Fatalf("no dashboard ConfigMap for mesh %s", mesh)
	}
	raw, _, _ := unstructured.NestedString(cm.Object, "data", "fsm-webhooks.json")
	var d dashboardJSON
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

type bundleIssuer struct{ bundle []byte }

func (bundleIssuer) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	return nil, nil
}
func (i bundleIssuer) CABundle(context.Context) ([]byte, error) { return i.bundle, nil }
func (bundleIssuer) Provider() string                           { return "tresor" }

var byClause = regexp.MustCompile(`by \(([^)]*)\)`)

// The "Root CA days left" panel shows each trusted root of a rotation (the
// metric reports old and new, README "Metrics"). Every tresor root has the
// same subject: grouped without serial, old and new collapsed into one line.
func TestDashboardShowsEveryRootOfARotation(t *testing.T) {
	now := time.Now()
	var bundle []byte
	for _, v := range []time.Duration{24 * time.Hour, 87600 * time.Hour} {
		a, err := certs.NewRootAuthority(certs.ECDSAP256, v, now)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, certs.EncodeCertsPEM(a.Cert)...)
	}
	defer certmetrics.Watch(&bundleIssuer{bundle}, nil)()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []map[string]string
	for _, f := range fams {
		if f.GetName() != "fsm_webhooks_root_ca_expiry_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{"namespace": ns}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			series = append(series, l)
		}
	}
	if len(series) != 2 {
		t.Fatalf("%d root series, want 2", len(series))
	}
	d := renderDashboard(t, "fsm")
	for _, p := range d.Panels {
		if p.Title != "Root CA days left" {
			continue
		}
		by := strings.Split(byClause.FindStringSubmatch(p.Targets[0].Expr)[1], ",")
		groups := map[string]bool{}
		for _, s := range series {
			var k []string
			for _, l := range by {
				k = append(k, s[strings.TrimSpace(l)])
			}
			groups[strings.Join(k, "\x00")] = true
		}
		if len(groups) != 2 {
			t.Errorf("panel %q (%s) draws %d line(s) for 2 trusted roots: subjects %q / %q are equal, serial is aggregated away",
				p.Title, p.Targets[0].Expr, len(groups), series[0]["subject"], series[1]["subject"])
		}
	}
}

// Each mesh gets its own dashboard ConfigMap ("several meshes may send
// theirs to one namespace"): each has its own uid (Grafana keys dashboards by
// uid) and opens on its mesh's namespace, and $namespace offers the others.
// With the ServiceMonitor the pods carry no prometheus.io annotations, so a
// Prometheus scraping both does not store every series twice.
func TestDashboardPerMesh(t *testing.T) {
	a, b := renderDashboard(t, "mesha"), renderDashboard(t, "meshb")
	if a.UID == b.UID {
		t.Errorf("dashboards of meshes mesha and meshb share uid %q", a.UID)
	}
	// Grafana takes uids of at most 40 characters; two meshes whose long
	// names share their first 27 characters must still get two dashboards.
	long := "production-cluster-east-mesh-"
	l1, l2 := renderDashboard(t, long+"1"), renderDashboard(t, long+"2")
	if l1.UID == l2.UID {
		t.Errorf("dashboards of meshes %s1 and %s2 share uid %q", long, long, l1.UID)
	}
	for _, u := range []string{a.UID, l1.UID, l2.UID} {
		if len(u) > 40 {
			t.Errorf("dashboard uid %q is longer than Grafana's 40 characters", u)
		}
	}
	if a.UID != "fsm-webhooks-mesha" {
		t.Errorf("dashboard uid %q, want fsm-webhooks-mesha: a uid that fits is kept as it was", a.UID)
	}
	found := false
	for _, v := range a.Templating.List {
		if v.Name != "namespace" {
			continue
		}
		found = true
		if v.Type != "query" || !v.IncludeAll {
			t.Errorf("$namespace is a %s variable (includeAll %v), want a query over the exporting namespaces with All", v.Type, v.IncludeAll)
		}
		if got, _ := json.Marshal(v.Current.Value); string(got) != `["`+ns+`"]` {
			t.Errorf("$namespace opens on %s, want the mesh's namespace %s", got, ns)
		}
	}
	if !found {
		t.Error("no $namespace variable")
	}
	d := mustFind(t, mustRender(t, monitoringOn), "Deployment", "fsm-webhooks")
	if ann, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations"); ann["prometheus.io/scrape"] != "" {
		t.Errorf("pods carry prometheus.io/scrape=%q with the ServiceMonitor on", ann["prometheus.io/scrape"])
	}
	d = mustFind(t, mustRender(t, ""), "Deployment", "fsm-webhooks")
	if ann, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations"); ann["prometheus.io/scrape"] != "true" {
		t.Errorf("pods carry prometheus.io/scrape=%q without the ServiceMonitor, want true", ann["prometheus.io/scrape"])
	}
}

// The ServiceMonitor interval is a free value (schema: any duration): with
// interval 5m a fixed rate window of 5m holds at most one or two samples, and
// FSMWebhooksAdmissionErrors could never fire. Every window covers at least
// 4 intervals (and 5m).
func TestRuleWindowsCoverScrapeInterval(t *testing.T) {
	for _, interval := range []string{"15s", "30s", "1m30s", "5m"} {
		t.Run(interval, func(t *testing.T) {
			r := mustRender(t, `
fsm:
  webhooks:
    monitoring:
      serviceMonitor: {enabled: true, interval: `+interval+`}
      prometheusRule: {enabled: true}
`)
			iv, err := model.ParseDuration(interval)
			if err != nil {
				t.Fatal(err)
			}
			want := max(4*time.Duration(iv), 5*time.Minute)
			pr := r.Find("PrometheusRule", "fsm-webhooks")
			groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
			window := regexp.MustCompile(`\[([0-9a-z]+)\]`)
			for _, g := range groups {
				for _, rule := range g.(map[string]any)["rules"].([]any) {
					m := rule.(map[string]any)
					for _, w := range window.FindAllStringSubmatch(m["expr"].(string), -1) {
						d, err := model.ParseDuration(w[1])
						if err != nil {
							t.Fatal(err)
						}
						if time.Duration(d) < want {
							t.Errorf("%s: range [%s] is shorter than %s (4 scrape intervals of %s, at least 5m)", m["alert"], w[1], want, interval)
						}
					}
				}
			}
		})
	}
}

// registered() accepts _bucket/_sum/_count only of a histogram family: a
// histogram_quantile over a gauge or counter must not pass.
func TestRegisteredRequiresHistogramForBucket(t *testing.T) {
	for _, n := range []string{"fsm_webhooks_ready_bucket", "fsm_webhooks_requests_total_bucket", "fsm_webhooks_root_ca_expiry_seconds_sum"} {
		if registered(n) {
			t.Errorf("registered(%q) = true: no histogram family of that base name exists", n)
		}
	}
}
