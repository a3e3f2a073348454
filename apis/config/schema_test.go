package config_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

const presetPath = "v1alpha3/testdata/fsm-preset-meshconfig.yaml"

func newScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, v1alpha2.AddToScheme, v1alpha3.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatalf("scheme: %v", err)
		}
	}
	return s
}

func loadPreset(t testing.TB) *v1alpha3.MeshConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.FromSlash(presetPath))
	if err != nil {
		t.Fatal(err)
	}
	mc := &v1alpha3.MeshConfig{}
	// Strict: an unknown or misspelt field in the preset (FSM's preset had
	// two) fails here instead of being pruned silently by the apiserver.
	if err := yaml.UnmarshalStrict(raw, mc); err != nil {
		t.Fatalf("preset %s is not a v1alpha3 MeshConfig: %v", presetPath, err)
	}
	return mc
}

func TestPresetDecodesStrictly(t *testing.T) {
	mc := loadPreset(t)
	if mc.Spec.Image.Registry != v1alpha3.DefaultImageRegistry || mc.Spec.Misc.RepoServerImage != v1alpha3.DefaultRepoServerImage {
		t.Errorf("preset image/misc differ from the schema defaults: %+v %+v", mc.Spec.Image, mc.Spec.Misc)
	}
	// The preset writes the default-true booleans explicitly so that it reads
	// the same with or without schema defaulting.
	for name, b := range map[string]*bool{
		"compressConfig": mc.Spec.Sidecar.CompressConfig, "holdApplicationUntilProxyStarts": mc.Spec.Sidecar.HoldApplicationUntilProxyStarts,
		"gracefulExitUntilDownstreamEnds": mc.Spec.Sidecar.GracefulExitUntilDownstreamEnds,
	} {
		if b == nil || !*b {
			t.Errorf("preset sidecar.%s = %v, want true", name, b)
		}
	}
}

func validV1alpha1(name string) *v1alpha1.MeshConfig {
	return &v1alpha1.MeshConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.MeshConfigSpec{
			ClusterSet: v1alpha1.ClusterSetSpec{Properties: []v1alpha1.ClusterPropertySpec{{Name: "env", Value: "test"}}},
			Sidecar: v1alpha1.SidecarSpec{
				// No sidecarClass/initContainerImage/sidecarDrivers: without the
				// converter the apiserver prunes them on storage (FSM's bug the
				// converter tests cover).
				LogLevel: "error",
			},
			RepoServer: v1alpha1.RepoServerSpec{IPAddr: "127.0.0.1"},
			Traffic: v1alpha1.TrafficSpec{
				InterceptionMode: "PodLevel", OutboundIPRangeExclusionList: []string{"10.0.0.0/8"},
				OutboundPortExclusionList: []int32{65535}, InboundPortExclusionList: []int32{},
				ServiceAccessMode: "mixed",
			},
			Observability: v1alpha1.ObservabilitySpec{
				FSMLogLevel: "info",
				Tracing:     v1alpha1.TracingSpec{Enable: true, Port: 40000, SampledFraction: ptr.To(0.25)},
			},
			Certificate: v1alpha1.CertificateSpec{ServiceCertValidityDuration: "24h", CertKeyBitSize: 2048},
			PluginChains: v1alpha1.PluginChainsSpec{
				InboundTCPChains: []v1alpha1.PluginChainSpec{{Plugin: "p", Priority: 1.5}}, InboundHTTPChains: []v1alpha1.PluginChainSpec{},
				OutboundTCPChains: []v1alpha1.PluginChainSpec{}, OutboundHTTPChains: []v1alpha1.PluginChainSpec{},
			},
		},
	}
}

func validV1alpha2(name string) *v1alpha2.MeshConfig {
	return &v1alpha2.MeshConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha2.MeshConfigSpec{
			ClusterSet: v1alpha2.ClusterSetSpec{Properties: []v1alpha2.ClusterPropertySpec{}},
			Sidecar: v1alpha2.SidecarSpec{
				LogLevel: "error", TLSMinProtocolVersion: "TLSv1_2", TLSMaxProtocolVersion: "TLSv1_3",
				LocalProxyMode: "PodIP", LocalDNSProxy: v1alpha2.LocalDNSProxy{Enable: true, PrimaryUpstreamDNSServerIPAddr: "10.0.0.10"},
			},
			RepoServer: v1alpha2.RepoServerSpec{IPAddr: "127.0.0.1"},
			Traffic: v1alpha2.TrafficSpec{
				InterceptionMode: "PodLevel", OutboundIPRangeExclusionList: []string{}, OutboundIPRangeInclusionList: []string{"10.0.0.0/8"},
				OutboundPortExclusionList: []int32{}, InboundPortExclusionList: []int32{1}, NetworkInterfaceExclusionList: []string{"eth1"},
				ServiceAccessMode: "domain",
			},
			Observability: v1alpha2.ObservabilitySpec{Tracing: v1alpha2.TracingSpec{Enable: true, Port: 65535, SampledFraction: ptr.To("0.5")}},
			PluginChains: v1alpha2.PluginChainsSpec{
				InboundTCPChains: []v1alpha2.PluginChainSpec{}, InboundHTTPChains: []v1alpha2.PluginChainSpec{},
				OutboundTCPChains: []v1alpha2.PluginChainSpec{}, OutboundHTTPChains: []v1alpha2.PluginChainSpec{},
			},
		},
	}
}

// TestSchema runs every case against one real apiserver with the generated CRD.
func TestSchema(t *testing.T) {
	ctrllog.SetLogger(logr.Discard()) // deprecation warnings of v1alpha1/2 requests
	scheme := newScheme(t)
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()},
		Client:            client.Options{Scheme: scheme},
	})
	ctx := context.Background()
	c := env.Client

	t.Run("v1alpha3 preset is accepted and reads back unchanged", func(t *testing.T) {
		want := loadPreset(t)
		want.Namespace = "default"
		if err := c.Create(ctx, want.DeepCopy()); err != nil {
			t.Fatalf("the schema rejects the preset: %v", err)
		}
		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(want.Spec, got.Spec) {
			t.Errorf("spec changed on the way through the apiserver:\nwant %s\ngot  %s", mustJSON(t, want.Spec), mustJSON(t, got.Spec))
		}
	})

	t.Run("v1alpha3 false booleans with true defaults survive", func(t *testing.T) {
		mc := loadPreset(t)
		mc.Name, mc.Namespace = "false-bools", "default"
		mc.Spec.Sidecar.CompressConfig = ptr.To(false)
		mc.Spec.Traffic.ServiceAccessNames.WithTrustDomain = ptr.To(false)
		mc.Spec.Warmup.MinWeight = ptr.To[int32](0)
		if err := c.Create(ctx, mc); err != nil {
			t.Fatal(err)
		}
		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(mc), got); err != nil {
			t.Fatal(err)
		}
		if *got.Spec.Sidecar.CompressConfig || *got.Spec.Traffic.ServiceAccessNames.WithTrustDomain || *got.Spec.Warmup.MinWeight != 0 {
			t.Errorf("explicit false/0 was replaced by a default: compressConfig=%v withTrustDomain=%v minWeight=%v",
				*got.Spec.Sidecar.CompressConfig, *got.Spec.Traffic.ServiceAccessNames.WithTrustDomain, *got.Spec.Warmup.MinWeight)
		}
	})

	t.Run("v1alpha3 minimal object gets the schema defaults", func(t *testing.T) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(v1alpha3.GroupVersion.String())
		u.SetKind("MeshConfig")
		u.SetName("minimal")
		u.SetNamespace("default")
		u.Object["spec"] = map[string]any{"image": map[string]any{}, "misc": map[string]any{}, "connector": map[string]any{
			"lb": map[string]any{}, "viaGateway": map[string]any{
				"clusterIP": "", "externalIP": "", "ingressAddr": "", "egressAddr": "",
				"ingressHTTPPort": 0, "ingressGRPCPort": 0, "egressHTTPPort": 0, "egressGRPCPort": 0,
			},
		}}
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(got.Spec.Image, v1alpha3.DefaultImage()) || got.Spec.Misc != v1alpha3.DefaultMisc() ||
			got.Spec.Connector.Notice != v1alpha3.DefaultConnectorNotice || got.Spec.Connector.Lb.Type != v1alpha3.ActiveActiveLbType {
			t.Errorf("defaults not applied or differ from the Go defaults: image=%+v misc=%+v connector=%+v", got.Spec.Image, got.Spec.Misc, got.Spec.Connector)
		}
	})

	for _, tc := range []struct {
		name string
		obj  client.Object
	}{
		{"v1alpha1", validV1alpha1("valid-v1alpha1")},
		{"v1alpha2", validV1alpha2("valid-v1alpha2")},
	} {
		t.Run(tc.name+" valid object is accepted and reads back unchanged", func(t *testing.T) {
			want := tc.obj.DeepCopyObject().(client.Object)
			if err := c.Create(ctx, tc.obj); err != nil {
				t.Fatalf("the schema rejects a valid %s object: %v", tc.name, err)
			}
			got := want.DeepCopyObject().(client.Object)
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(specOf(t, want), specOf(t, got)) {
				t.Errorf("spec changed:\nwant %s\ngot  %s", specOf(t, want), specOf(t, got))
			}
		})
	}

	invalid := []struct {
		name    string
		obj     func() client.Object
		wantMsg []string
	}{
		{"v1alpha1 tracing port above 65535", func() client.Object {
			mc := validV1alpha1("bad-port")
			mc.Spec.Observability.Tracing.Port = 65536
			return mc
		}, []string{"spec.observability.tracing.port", "65535"}},
		{"v1alpha1 port list item 0", func() client.Object {
			mc := validV1alpha1("bad-port-list")
			mc.Spec.Traffic.InboundPortExclusionList = []int32{0}
			return mc
		}, []string{"spec.traffic.inboundPortExclusionList[0]", "should be greater than or equal to 1"}},
		{"v1alpha1 sampledFraction above 1", func() client.Object {
			mc := validV1alpha1("bad-fraction")
			mc.Spec.Observability.Tracing.SampledFraction = ptr.To(1.5)
			return mc
		}, []string{"spec.observability.tracing.sampledFraction"}},
		{"v1alpha2 tls min above max", func() client.Object {
			mc := validV1alpha2("bad-tls")
			mc.Spec.Sidecar.TLSMinProtocolVersion, mc.Spec.Sidecar.TLSMaxProtocolVersion = "TLSv1_3", "TLSv1_1"
			return mc
		}, []string{"spec.sidecar.tlsMinProtocolVersion", "tlsMinProtocolVersion must be less than or equal to tlsMaxProtocolVersion"}},
		{"v1alpha2 unknown tls version", func() client.Object {
			mc := validV1alpha2("bad-tls-version")
			mc.Spec.Sidecar.TLSMaxProtocolVersion = "TLSv9"
			return mc
		}, []string{"spec.sidecar.tlsMaxProtocolVersion", "Unsupported value"}},
		{"v1alpha2 certKeyBitSize 1024", func() client.Object {
			mc := validV1alpha2("bad-bits")
			mc.Spec.Certificate.CertKeyBitSize = 1024
			return mc
		}, []string{"spec.certificate.certKeyBitSize", "2048"}},
		{"v1alpha3 interceptionMode outside the enum", func() client.Object {
			mc := loadPreset(t)
			mc.Name, mc.Namespace = "bad-mode", "default"
			mc.Spec.Traffic.InterceptionMode = "Sidecar"
			return mc
		}, []string{"spec.traffic.interceptionMode", "Unsupported value"}},
		{"v1alpha3 warmup minWeight above maxWeight", func() client.Object {
			mc := loadPreset(t)
			mc.Name, mc.Namespace = "bad-warmup", "default"
			mc.Spec.Warmup.MinWeight, mc.Spec.Warmup.MaxWeight = ptr.To[int32](90), ptr.To[int32](50)
			return mc
		}, []string{"spec.warmup.minWeight", "minWeight must be less than or equal to maxWeight"}},
		{"v1alpha3 warmup weight above 100", func() client.Object {
			mc := loadPreset(t)
			mc.Name, mc.Namespace = "bad-weight", "default"
			mc.Spec.Warmup.MaxWeight = ptr.To[int32](101)
			return mc
		}, []string{"spec.warmup.maxWeight", "100"}},
		{"v1alpha3 egress gateway port 0", func() client.Object {
			mc := loadPreset(t)
			mc.Name, mc.Namespace = "bad-egress-port", "default"
			mc.Spec.EgressGateway.Port = ptr.To[int32](0)
			return mc
		}, []string{"spec.egressGateway.port"}},
		{"v1alpha3 missing image, misc and connector", func() client.Object {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion(v1alpha3.GroupVersion.String())
			u.SetKind("MeshConfig")
			u.SetName("missing-required")
			u.SetNamespace("default")
			u.Object["spec"] = map[string]any{}
			return u
		}, []string{"spec.image: Required value", "spec.misc: Required value", "spec.connector: Required value"}},
	}
	for _, tc := range invalid {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			err := c.Create(ctx, tc.obj())
			if err == nil {
				t.Fatal("the apiserver accepted an invalid object")
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func specOf(t testing.TB, obj client.Object) string {
	t.Helper()
	switch o := obj.(type) {
	case *v1alpha1.MeshConfig:
		return mustJSON(t, o.Spec)
	case *v1alpha2.MeshConfig:
		return mustJSON(t, o.Spec)
	case *v1alpha3.MeshConfig:
		return mustJSON(t, o.Spec)
	}
	t.Fatalf("unexpected type %T", obj)
	return ""
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
