package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

func TestSampledFraction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hub     *string  // v1alpha3 value
		num     *float64 // v1alpha1 value after conversion down
		keepRaw bool     // the string must be kept in the annotation
	}{
		{"absent", nil, nil, false},
		{"canonical number", ptr.To("0.25"), ptr.To(0.25), false},
		{"integer", ptr.To("1"), ptr.To(1.0), false},
		{"exponent", ptr.To("1e-05"), ptr.To(1e-05), false},
		{"trailing zero", ptr.To("0.50"), ptr.To(0.5), true},
		{"leading dot", ptr.To(".5"), ptr.To(0.5), true},
		{"not a number", ptr.To("high"), nil, true},
		{"empty string", ptr.To(""), nil, true},
		{"NaN cannot be a JSON number", ptr.To("NaN"), nil, true},
		{"overflow", ptr.To("1e400"), nil, true},
		// strconv reads these as infinities without an error; no JSON number holds one.
		{"infinity cannot be a JSON number", ptr.To("Inf"), nil, true},
		{"negative infinity cannot be a JSON number", ptr.To("-infinity"), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := &v1alpha3.MeshConfig{}
			hub.Spec.Observability.Tracing.SampledFraction = tc.hub
			hub.Spec.Observability.RemoteLogging.SampledFraction = tc.hub
			down := &MeshConfig{}
			if err := down.ConvertFrom(hub); err != nil {
				t.Fatal(err)
			}
			for _, got := range []*float64{down.Spec.Observability.Tracing.SampledFraction, down.Spec.Observability.RemoteLogging.SampledFraction} {
				if (got == nil) != (tc.num == nil) || (got != nil && *got != *tc.num) {
					t.Errorf("v1alpha1 number = %v, want %v", deref(got), deref(tc.num))
				}
			}
			ann := down.Annotations[lossless.AnnotationV1Alpha3Fields]
			if kept := strings.Contains(ann, `"sampledFraction"`); kept != tc.keepRaw {
				t.Errorf("annotation %q: string kept = %v, want %v", ann, kept, tc.keepRaw)
			}
			up := &v1alpha3.MeshConfig{}
			if err := down.ConvertTo(up); err != nil {
				t.Fatal(err)
			}
			for _, got := range []*string{up.Spec.Observability.Tracing.SampledFraction, up.Spec.Observability.RemoteLogging.SampledFraction} {
				if (got == nil) != (tc.hub == nil) || (got != nil && *got != *tc.hub) {
					t.Errorf("back in v1alpha3 = %v, want %v", derefS(got), derefS(tc.hub))
				}
			}
		})
	}
}

// A number changed or removed through v1alpha1 wins over the string the
// annotation remembers; a non-number string survives a v1alpha1 edit
// because v1alpha1 could not show it.
func TestSampledFractionEditedInV1alpha1(t *testing.T) {
	for _, tc := range []struct {
		name string
		hub  string
		edit func(*TracingSpec)
		want *string
	}{
		{"number changed", "0.50", func(s *TracingSpec) { s.SampledFraction = ptr.To(0.7) }, ptr.To("0.7")},
		{"number removed", "0.50", func(s *TracingSpec) { s.SampledFraction = nil }, nil},
		{"number untouched", "0.50", func(*TracingSpec) {}, ptr.To("0.50")},
		{"number set where a string was", "high", func(s *TracingSpec) { s.SampledFraction = ptr.To(0.1) }, ptr.To("0.1")},
		{"string untouched", "high", func(*TracingSpec) {}, ptr.To("high")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := &v1alpha3.MeshConfig{}
			hub.Spec.Observability.Tracing.SampledFraction = ptr.To(tc.hub)
			down := &MeshConfig{}
			if err := down.ConvertFrom(hub); err != nil {
				t.Fatal(err)
			}
			tc.edit(&down.Spec.Observability.Tracing)
			up := &v1alpha3.MeshConfig{}
			if err := down.ConvertTo(up); err != nil {
				t.Fatal(err)
			}
			if got := up.Spec.Observability.Tracing.SampledFraction; (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("v1alpha3 sampledFraction = %v, want %v", derefS(got), derefS(tc.want))
			}
		})
	}
}

func TestDeltas(t *testing.T) {
	t.Run("v1alpha2 and v1alpha3 fields go into the annotation and come back", func(t *testing.T) {
		hub := &v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "m", Annotations: map[string]string{"keep": "me"}}}
		hub.Spec = v1alpha3.MeshConfigSpec{
			Sidecar: v1alpha3.SidecarSpec{
				LogLevel: "debug", TLSMinProtocolVersion: "TLSv1_2", CipherSuites: []string{"ECDHE-RSA-AES128-GCM-SHA256"},
				LocalProxyMode: v1alpha3.LocalProxyModePodIP, LocalDNSProxy: v1alpha3.LocalDNSProxy{Enable: true, PrimaryUpstreamDNSServerIPAddr: "10.0.0.10"},
			},
			Traffic: v1alpha3.TrafficSpec{OutboundIPRangeInclusionList: []string{"10.0.0.0/8"}, NetworkInterfaceExclusionList: []string{"eth1"}},
			Warmup:  &v1alpha3.WarmupSpec{MinWeight: ptr.To[int64](0)},
			Image:   v1alpha3.ImageSpec{Registry: "example.com", Tag: "v1", PullPolicy: "Always"},
			Misc:    v1alpha3.DefaultMisc(), Connector: v1alpha3.DefaultConnector(),
		}
		down := &MeshConfig{}
		if err := down.ConvertFrom(hub); err != nil {
			t.Fatal(err)
		}
		if down.Spec.Sidecar.LogLevel != "debug" || down.Annotations["keep"] != "me" {
			t.Errorf("shared data lost: %+v %v", down.Spec.Sidecar, down.Annotations)
		}
		ann := down.Annotations[lossless.AnnotationV1Alpha3Fields]
		for _, want := range []string{`"tlsMinProtocolVersion":"TLSv1_2"`, `"localProxyMode":"PodIP"`, `"primaryUpstreamDNSServerIPAddr":"10.0.0.10"`,
			`"outboundIPRangeInclusionList":["10.0.0.0/8"]`, `"minWeight":0`, `"registry":"example.com"`} {
			if !strings.Contains(ann, want) {
				t.Errorf("annotation %s lacks %s", ann, want)
			}
		}
		for _, absent := range []string{`"misc"`, `"connector"`, `"sidecarClass"`} {
			if strings.Contains(ann, absent) {
				t.Errorf("annotation %s carries %s although it is the default", ann, absent)
			}
		}
		up := &v1alpha3.MeshConfig{}
		if err := down.ConvertTo(up); err != nil {
			t.Fatal(err)
		}
		if up.Spec.Sidecar.TLSMinProtocolVersion != "TLSv1_2" || up.Spec.Sidecar.LocalDNSProxy.PrimaryUpstreamDNSServerIPAddr != "10.0.0.10" ||
			*up.Spec.Warmup.MinWeight != 0 || up.Spec.Image.Registry != "example.com" || up.Spec.Traffic.NetworkInterfaceExclusionList[0] != "eth1" {
			t.Errorf("not restored: %+v", up.Spec)
		}
		if _, ok := up.Annotations[lossless.AnnotationV1Alpha3Fields]; ok || up.Annotations["keep"] != "me" {
			t.Errorf("annotations after restore: %v", up.Annotations)
		}
	})

	t.Run("sidecarClass, initContainerImage and sidecarDrivers go into the hub annotation", func(t *testing.T) {
		old := &MeshConfig{}
		old.Spec.Sidecar = SidecarSpec{
			SidecarClass: "pipy", InitContainerImage: "init:1",
			SidecarDrivers: []SidecarDriverSpec{{SidecarName: "pipy", ProxyServerPort: 6060, SidecarDisabledMTLS: true}},
		}
		hub := &v1alpha3.MeshConfig{}
		if err := old.ConvertTo(hub); err != nil {
			t.Fatal(err)
		}
		want := `{"sidecar":{"sidecarClass":"pipy","initContainerImage":"init:1","sidecarDrivers":[{"sidecarName":"pipy","proxyServerPort":6060,"sidecarDisabledMTLS":true}]}}`
		if got := hub.Annotations[lossless.AnnotationV1Alpha2Fields]; got != want {
			t.Errorf("hub annotation\n got %s\nwant %s", got, want)
		}
		back := &MeshConfig{}
		if err := back.ConvertFrom(hub); err != nil {
			t.Fatal(err)
		}
		if back.Spec.Sidecar.SidecarClass != "pipy" || back.Spec.Sidecar.InitContainerImage != "init:1" || len(back.Spec.Sidecar.SidecarDrivers) != 1 || len(back.Annotations) != 0 {
			t.Errorf("not restored: %+v annotations %v", back.Spec.Sidecar, back.Annotations)
		}
	})

	t.Run("converting up fills the v1alpha3 required objects", func(t *testing.T) {
		hub := &v1alpha3.MeshConfig{}
		if err := (&MeshConfig{}).ConvertTo(hub); err != nil {
			t.Fatal(err)
		}
		s := hub.Spec
		if s.Image.Registry != v1alpha3.DefaultImageRegistry || s.Misc != v1alpha3.DefaultMisc() || s.Connector.Notice != v1alpha3.DefaultConnectorNotice ||
			s.ClusterSet.Region != "default" || s.Traffic.OutboundIPRangeInclusionList == nil || s.Traffic.NetworkInterfaceExclusionList == nil ||
			s.Sidecar.CompressConfig == nil || !*s.Sidecar.CompressConfig || s.Traffic.ServiceAccessNames == nil {
			t.Errorf("defaults missing: %+v", s)
		}
		if s.Warmup != nil || s.Ingress != nil || len(hub.Annotations) != 0 {
			t.Errorf("optional sections or annotations invented: warmup=%v ingress=%v annotations=%v", s.Warmup, s.Ingress, hub.Annotations)
		}
	})

	t.Run("a malformed annotation fails with its name", func(t *testing.T) {
		old := &MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns", Annotations: map[string]string{lossless.AnnotationV1Alpha3Fields: "{"}}}
		err := old.ConvertTo(&v1alpha3.MeshConfig{})
		if err == nil || !strings.Contains(err.Error(), lossless.AnnotationV1Alpha3Fields) || !strings.Contains(err.Error(), "ns/m") {
			t.Errorf("error = %v", err)
		}
	})
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func derefS(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// TestListsTheSchemaRequiresAreNeverNull: as v1alpha2's; v1alpha3 requires
// none of the lists v1alpha1's schema does, and a null is dropped by the
// apiserver, so the object read back would fail its own schema when
// written back as read.
func TestListsTheSchemaRequiresAreNeverNull(t *testing.T) {
	down := &MeshConfig{}
	if err := down.ConvertFrom(&v1alpha3.MeshConfig{}); err != nil {
		t.Fatal(err)
	}
	up := &v1alpha3.MeshConfig{}
	if err := (&MeshConfig{}).ConvertTo(up); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]any{"v1alpha3 → v1alpha1": down.Spec, "v1alpha1 → v1alpha3": up.Spec} {
		raw, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "null") {
			t.Errorf("%s: a null in %s", name, raw)
		}
	}
}
