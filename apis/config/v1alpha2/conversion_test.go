package v1alpha2

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

func TestDeltas(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hub       func(*v1alpha3.MeshConfigSpec)
		inAnn     string // must appear in the v1alpha2 annotation; "" = no annotation
		sharedChk func(*MeshConfigSpec) bool
	}{
		{"shared fields only: no annotation", func(s *v1alpha3.MeshConfigSpec) {
			s.Sidecar.TLSMinProtocolVersion = "TLSv1_2"
			s.Sidecar.LocalDNSProxy.Enable = true
			s.Observability.Tracing.SampledFraction = ptr.To("0.50")
		}, "", func(s *MeshConfigSpec) bool {
			return s.Sidecar.TLSMinProtocolVersion == "TLSv1_2" && s.Sidecar.LocalDNSProxy.Enable && *s.Observability.Tracing.SampledFraction == "0.50"
		}},
		{"explicit false where the default is true", func(s *v1alpha3.MeshConfigSpec) { s.Sidecar.CompressConfig = ptr.To(false) },
			`"sidecar":{"compressConfig":false`, nil},
		{"localDNSProxy wildcard", func(s *v1alpha3.MeshConfigSpec) {
			s.Sidecar.LocalDNSProxy.Wildcard = v1alpha3.WildcardDN{Enable: true, IPs: []v1alpha3.ResolveAddr{{IPv4: "10.0.0.1"}}}
		}, `"wildcard":{"enable":true,"ips":[{"ipv4":"10.0.0.1"}]}`, nil},
		{"repoServer port", func(s *v1alpha3.MeshConfigSpec) { s.RepoServer.Port = 6060 }, `"repoServer":{"port":6060}`, nil},
		{"remoteLogging secretName", func(s *v1alpha3.MeshConfigSpec) { s.Observability.RemoteLogging.SecretName = "rl" }, `"secretName":"rl"`, nil},
		{"new feature flag", func(s *v1alpha3.MeshConfigSpec) { s.FeatureFlags.EnableSidecarPrettyConfig = true }, `"enableSidecarPrettyConfig":true`, nil},
		{"clusterSet identity", func(s *v1alpha3.MeshConfigSpec) { s.ClusterSet.UID = "u-1" }, `"uid":"u-1"`, nil},
		{"connector", func(s *v1alpha3.MeshConfigSpec) { s.Connector.ViaGateway.ClusterIP = "10.0.0.2" }, `"clusterIP":"10.0.0.2"`, nil},
		{"egress gateway", func(s *v1alpha3.MeshConfigSpec) { s.EgressGateway = &v1alpha3.EgressGatewaySpec{Enabled: true} }, `"egressGateway":{"adminPort":null,"enabled":true`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := &v1alpha3.MeshConfig{}
			if err := (&MeshConfig{}).ConvertTo(hub); err != nil {
				t.Fatal(err)
			}
			tc.hub(&hub.Spec)
			down := &MeshConfig{}
			if err := down.ConvertFrom(hub); err != nil {
				t.Fatal(err)
			}
			ann, ok := down.Annotations[lossless.AnnotationV1Alpha3Fields]
			if tc.inAnn == "" && ok {
				t.Errorf("unexpected annotation %s", ann)
			}
			if tc.inAnn != "" && !strings.Contains(ann, tc.inAnn) {
				t.Errorf("annotation %q lacks %s", ann, tc.inAnn)
			}
			if tc.sharedChk != nil && !tc.sharedChk(&down.Spec) {
				t.Errorf("shared fields wrong: %+v", down.Spec)
			}
			up := &v1alpha3.MeshConfig{}
			if err := down.ConvertTo(up); err != nil {
				t.Fatal(err)
			}
			if got, want := mustJSON(t, up.Spec), mustJSON(t, hub.Spec); got != want {
				t.Errorf("v1alpha3 → v1alpha2 → v1alpha3\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestEmptyObjectConvertsUp(t *testing.T) {
	hub := &v1alpha3.MeshConfig{}
	if err := (&MeshConfig{}).ConvertTo(hub); err != nil {
		t.Fatal(err)
	}
	if hub.Spec.Image.Registry != v1alpha3.DefaultImageRegistry || hub.Spec.Connector.Lb.Type != v1alpha3.ActiveActiveLbType {
		t.Errorf("required objects not filled: %+v", hub.Spec)
	}
}

func TestLegacyFieldsNeedTheRightHub(t *testing.T) {
	if err := (&MeshConfig{}).ConvertTo(nil); err == nil {
		t.Error("converting to a nil hub succeeded")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListsTheSchemaRequiresAreNeverNull: a v1alpha3 object without the
// traffic lists, plugin chains or clusterSet.properties (v1alpha3 requires
// none of them) converts down with empty lists, and an old object without
// them converts up the same way: a null is dropped by the apiserver, and the
// object read back would fail its own schema ("Required value") when
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
	for name, spec := range map[string]any{"v1alpha3 → v1alpha2": down.Spec, "v1alpha2 → v1alpha3": up.Spec} {
		if got := mustJSON(t, spec); strings.Contains(got, "null") {
			t.Errorf("%s: a null in %s", name, got)
		}
	}
}
