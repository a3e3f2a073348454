package certmetrics

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
)

// failing is an Issuer whose every call fails.
type failing struct{}

func (failing) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	return nil, errors.New("boom")
}
func (failing) CABundle(context.Context) ([]byte, error) { return nil, errors.New("unreachable") }
func (failing) Provider() string                         { return "vault" }

// TestInstrument: every Issue is timed under its provider and result, and a
// BundleNotifier stays one.
func TestInstrument(t *testing.T) {
	ca, err := certstest.New(context.Background(), certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The histogram is the process's: count what this test adds (-count).
	labels := [][2]string{{ca.Provider(), ResultOK}, {"vault", ResultError}}
	before := map[[2]string]uint64{}
	for _, l := range labels {
		before[l] = sampleCount(t, issuance.WithLabelValues(l[0], l[1]))
	}
	in := Instrument(ca)
	if _, ok := in.(certs.BundleNotifier); !ok {
		t.Fatal("the instrumented tresor-like CA lost certs.BundleNotifier")
	}
	if _, err := in.Issue(context.Background(), certs.Request{CommonName: "a.b", Validity: time.Hour, Usage: certs.UsageClient}); err != nil {
		t.Fatal(err)
	}
	bad := Instrument(failing{})
	if _, ok := bad.(certs.BundleNotifier); ok {
		t.Fatal("an issuer without notifications became a BundleNotifier")
	}
	if _, err := bad.Issue(context.Background(), certs.Request{CommonName: "a.b"}); err == nil {
		t.Fatal("the wrapped error was lost")
	}
	for _, l := range labels {
		h := issuance.WithLabelValues(l[0], l[1])
		if got := sampleCount(t, h) - before[l]; got != 1 {
			t.Errorf("issuance{provider=%q,result=%q} count went up by %d, want 1", l[0], l[1], got)
		}
	}
}

func sampleCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestRootCollector: each trusted root with its expiry, the rotation phase
// as a state set, and unreadable bundles counted.
func TestRootCollector(t *testing.T) {
	ca, err := certstest.New(context.Background(), certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := ca.CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	root, err := certs.ParseCertsPEM(bundle)
	if err != nil {
		t.Fatal(err)
	}
	now := root[0].NotAfter.Add(-100 * time.Second)
	roots.now = func() time.Time { return now }
	defer func() { roots.now = nil }()

	stop := Watch(ca, func() string { return PhaseNextRootActive })
	subject, serial := root[0].Subject.String(), root[0].SerialNumber.Text(16)
	want := `
# HELP fsm_webhooks_root_ca_expiry_seconds Seconds until each trusted mesh root CA expires (during a rotation: old and new).
# TYPE fsm_webhooks_root_ca_expiry_seconds gauge
fsm_webhooks_root_ca_expiry_seconds{provider="` + ca.Provider() + `",serial="` + serial + `",subject="` + subject + `"} 100
# HELP fsm_webhooks_root_rotation_phase 1 for the root rotation phase the mesh CA is in (None, NextRootAdded, NextRootActive, Complete), 0 for the others.
# TYPE fsm_webhooks_root_rotation_phase gauge
fsm_webhooks_root_rotation_phase{phase="Complete",provider="` + ca.Provider() + `"} 0
fsm_webhooks_root_rotation_phase{phase="NextRootActive",provider="` + ca.Provider() + `"} 1
fsm_webhooks_root_rotation_phase{phase="NextRootAdded",provider="` + ca.Provider() + `"} 0
fsm_webhooks_root_rotation_phase{phase="None",provider="` + ca.Provider() + `"} 0
`
	if err := testutil.CollectAndCompare(roots, strings.NewReader(want), "fsm_webhooks_root_ca_expiry_seconds", "fsm_webhooks_root_rotation_phase"); err != nil {
		t.Fatal(err)
	}
	stop()
	if n := testutil.CollectAndCount(roots); n != 0 {
		t.Fatalf("%d series after stop, want none", n)
	}

	roots.mu.Lock()
	errs0 := roots.readErrors // the process's counter (-count)
	roots.mu.Unlock()
	stop = Watch(failing{}, nil)
	defer stop()
	for range 2 {
		testutil.CollectAndCount(roots)
	}
	want = `
# HELP fsm_webhooks_root_ca_read_errors_total Scrapes at which the mesh CA bundle could not be read or parsed.
# TYPE fsm_webhooks_root_ca_read_errors_total counter
fsm_webhooks_root_ca_read_errors_total{provider="vault"} ` + strconv.FormatFloat(errs0+3, 'f', -1, 64) + `
`
	if err := testutil.CollectAndCompare(roots, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestInstrumentExportsErrorsAtZero: the issuance histogram's error series
// of an instrumented provider is exported, at count 0, before any issuance
// fails, as the chart README promises of failure counters: one that appears
// with its first failure is a failure increase() and rate() never see.
func TestInstrumentExportsErrorsAtZero(t *testing.T) {
	Instrument(namedFailing{"zero-start"})
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "fsm_webhooks_cert_issuance_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["provider"] == "zero-start" && l["result"] == ResultError {
				if c := m.GetHistogram().GetSampleCount(); c != 0 {
					t.Errorf("count %d before any issuance, want 0", c)
				}
				return
			}
		}
	}
	t.Error(`fsm_webhooks_cert_issuance_duration_seconds{provider="zero-start",result="error"} not exported before a failure`)
}

type namedFailing struct{ name string }

func (namedFailing) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	return nil, errors.New("boom")
}
func (namedFailing) CABundle(context.Context) ([]byte, error) { return nil, errors.New("unreachable") }
func (n namedFailing) Provider() string                       { return n.name }
