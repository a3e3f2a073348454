package injector

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// noteRecorder keeps each Event's type, reason and formatted note.
type noteRecorder struct {
	mu     sync.Mutex
	events []string // "<type> <reason> <note>"
}

func (r *noteRecorder) Eventf(_, _ runtime.Object, eventtype, reason, _, note string, args ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, eventtype+" "+reason+" "+fmt.Sprintf(note, args...))
}

func (r *noteRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// rejectedGauge is the fields set in fsm_webhooks_injector_meshconfig_rejected.
func rejectedGauge(t *testing.T) []string {
	t.Helper()
	ch := make(chan prometheus.Metric, 32)
	meshConfigRejected.Collect(ch)
	close(ch)
	var out []string
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if d.GetGauge().GetValue() == 1 {
			out = append(out, d.GetLabel()[0].GetValue())
		}
	}
	sort.Strings(out)
	return out
}

// TestCachedMeshConfigRejects walks one MeshConfig through its life: a
// MeshConfig the injector cannot apply never fails an admission; the last
// valid settings (the defaults before any) stay in use, and the rejection is
// reported once per resourceVersion (Event, gauge), cleared by a valid one.
func TestCachedMeshConfigRejects(t *testing.T) {
	s := runtime.NewScheme()
	if err := configv1alpha3.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	cl := fake.NewClientBuilder().WithScheme(s).Build()
	rec := &noteRecorder{}
	src := &CachedMeshConfig{Reader: cl, Namespace: "fsm-system", Logger: testr.New(t), Recorder: rec}
	ctx := context.Background()
	mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}

	const badFields = "spec.sidecar.logLevel,spec.traffic.outboundIPRangeInclusionList"
	invalid := func(exclusion string) func(*configv1alpha3.MeshConfig) {
		return func(mc *configv1alpha3.MeshConfig) {
			mc.Spec.Traffic.InterceptionMode = ""
			mc.Spec.Traffic.OutboundIPRangeExclusionList = []string{exclusion}
			mc.Spec.Sidecar.LogLevel = "verbose"
			mc.Spec.Traffic.OutboundIPRangeInclusionList = []string{"10.96.0.0/12", "fd00::/8", "fd01::/8"}
		}
	}
	valid := func(exclusion string) func(*configv1alpha3.MeshConfig) {
		return func(mc *configv1alpha3.MeshConfig) {
			mc.Spec = configv1alpha3.MeshConfigSpec{}
			mc.Spec.Traffic.OutboundIPRangeExclusionList = []string{exclusion}
		}
	}
	steps := []struct {
		name      string
		change    func(*configv1alpha3.MeshConfig) // nil: no change; set and stored
		delete    bool
		exclusion []string // settings in use afterwards
		mode      string   // "" = PodLevel
		gauge     string   // fields set, comma-separated
		event     string   // substring of the one Event recorded, "" = none
	}{
		{name: "no MeshConfig: defaults"},
		{name: "first MeshConfig invalid: defaults", change: invalid("10.1.0.0/16"), gauge: badFields,
			event: "Warning MeshConfigRejected the sidecar injector cannot apply resourceVersion 1 and injects pods with the built-in defaults (no valid MeshConfig seen yet): " +
				`MeshConfig [spec.sidecar.logLevel: Unsupported value: "verbose"`},
		{name: "asked again: same settings, no second Event", gauge: badFields},
		{name: "valid: applied, gauge cleared", change: valid("10.2.0.0/16"), exclusion: []string{"10.2.0.0/16"}},
		{name: "invalid again: the last valid stays", change: invalid("10.3.0.0/16"), exclusion: []string{"10.2.0.0/16"}, gauge: badFields,
			event: "injects pods with the last valid MeshConfig (resourceVersion 2): MeshConfig [spec.sidecar.logLevel"},
		{name: "NodeLevel reads nothing else: applied despite the bad fields", change: func(mc *configv1alpha3.MeshConfig) {
			mc.Spec.Traffic.InterceptionMode = InterceptionNodeLevel
		}, exclusion: []string{"10.3.0.0/16"}, mode: InterceptionNodeLevel},
		{name: "deleted: defaults", delete: true},
		{name: "invalid after the delete: the defaults asked for by the delete", change: invalid("10.4.0.0/16"), gauge: badFields,
			event: "injects pods with the built-in defaults"},
	}
	for _, st := range steps {
		switch {
		case st.delete:
			if err := cl.Delete(ctx, mc); err != nil {
				t.Fatal(err)
			}
			mc = &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
		case st.change != nil:
			st.change(mc)
			var err error
			if mc.ResourceVersion == "" {
				err = cl.Create(ctx, mc)
			} else {
				err = cl.Update(ctx, mc)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := src.Settings(ctx)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !got.validated {
			t.Errorf("%s: settings not marked validated: Mutate would check them per admission", st.name)
		}
		want := DefaultSettings()
		if st.mode != "" {
			want.InterceptionMode = st.mode
		}
		if got.InterceptionMode != want.InterceptionMode || !reflect.DeepEqual(got.OutboundIPRangeExclusionList, st.exclusion) ||
			(st.mode == "" && got.LogLevel != want.LogLevel) {
			t.Errorf("%s: settings mode %s, exclusions %v, log level %s; want %s, %v, %s", st.name,
				got.InterceptionMode, got.OutboundIPRangeExclusionList, got.LogLevel, want.InterceptionMode, st.exclusion, want.LogLevel)
		}
		if g := strings.Join(rejectedGauge(t), ","); g != st.gauge {
			t.Errorf("%s: fsm_webhooks_injector_meshconfig_rejected fields %q, want %q", st.name, g, st.gauge)
		}
		events := rec.take()
		switch {
		case st.event == "" && len(events) != 0:
			t.Errorf("%s: unexpected events %q", st.name, events)
		case st.event != "" && (len(events) != 1 || !strings.Contains(events[0], st.event)):
			t.Errorf("%s: events %q, want one containing %q", st.name, events, st.event)
		}
	}
}

// A MeshConfig the injector rejects still injects through the handler: the
// admission succeeds with the fallback settings.
func TestHandlerInjectsDespiteRejectedMeshConfig(t *testing.T) {
	s := runtime.NewScheme()
	if err := configv1alpha3.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
	mc.Spec.Traffic.NetworkInterfaceExclusionList = []string{"eth0 -j ACCEPT"}
	rec := &noteRecorder{}
	f := newHandlerFixture(t, stubIssuer{}, nil)
	f.h.opts.MeshConfig = &CachedMeshConfig{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(mc).Build(), Namespace: "fsm-system", Recorder: rec}
	_, resp := f.post(t, reviewBody(t, nil), "application/json")
	if !resp.Allowed || len(resp.Patch) == 0 || len(f.secrets) != 1 {
		t.Fatalf("allowed %v, patch %d bytes, %d Secrets; want injected: %+v", resp.Allowed, len(resp.Patch), len(f.secrets), resp.Result)
	}
	if strings.Contains(string(resp.Patch), "eth0 -j ACCEPT") {
		t.Errorf("the rejected interface name reached the pod: %s", resp.Patch)
	}
	if ev := rec.take(); len(ev) != 1 || !strings.Contains(ev[0], `spec.traffic.networkInterfaceExclusionList[0]: Invalid value: "eth0 -j ACCEPT"`) {
		t.Errorf("events %q, want one naming the field and value", ev)
	}
}

func TestTruncateNote(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantLen int
	}{
		{strings.Repeat("a", maxEventNote), maxEventNote},
		{strings.Repeat("a", maxEventNote+1), maxEventNote},
		// A 3-byte rune across the cut is dropped whole.
		{strings.Repeat("a", maxEventNote-4) + "€€", maxEventNote - 1},
	} {
		got := truncateNote(tc.in)
		if len(got) != tc.wantLen || !strings.HasPrefix(tc.in, strings.TrimSuffix(got, "...")) {
			t.Errorf("truncateNote(%d bytes) = %d bytes %q..., want %d", len(tc.in), len(got), got[len(got)-8:], tc.wantLen)
		}
	}
}

func TestRejectedFields(t *testing.T) {
	mc := &configv1alpha3.MeshConfig{}
	mc.Spec.Traffic.OutboundPortExclusionList = []int32{0, 70000}
	mc.Spec.Sidecar.Resources = corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}}
	got := rejectedFields(SettingsFromMeshConfig(mc).fieldErrors())
	want := []string{"spec.sidecar.resources.claims", "spec.traffic.outboundPortExclusionList"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
}
