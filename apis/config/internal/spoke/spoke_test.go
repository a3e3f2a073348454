package spoke

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// hubOnlySpec sets every field HubOnly and Sidecar carry to a non-default.
func hubOnlySpec() v1alpha3.MeshConfigSpec {
	var s v1alpha3.MeshConfigSpec
	s.ClusterSet = v1alpha3.ClusterSetSpec{IsManaged: true, UID: "u", Region: "r", Zone: "z", Group: "g", Name: "n", ControlPlaneUID: "c"}
	s.RepoServer.Port = 6060
	s.FeatureFlags = v1alpha3.FeatureFlags{
		EnableTrafficWarmupPolicy: true, EnableSidecarPrettyConfig: true,
		EnableValidateGatewayListenerHostname: true, EnableValidateHTTPRouteHostnames: true,
		EnableValidateGRPCRouteHostnames: true, EnableValidateTLSRouteHostnames: true,
		UseEndpointSlicesForGateway: true, DropRouteRuleIfNoAvailableBackends: true,
	}
	s.Warmup = &v1alpha3.WarmupSpec{MinWeight: ptr.To[int64](1)}
	s.Ingress = &v1alpha3.IngressSpec{Namespaced: true}
	s.GatewayAPI = &v1alpha3.GatewayAPISpec{Enabled: true}
	s.ServiceLB = &v1alpha3.ServiceLBSpec{Image: "lb:1"}
	s.FLB = &v1alpha3.FLBSpec{StrictMode: true}
	s.EgressGateway = &v1alpha3.EgressGatewaySpec{Enabled: true}
	s.Image = v1alpha3.ImageSpec{Registry: "example.com/mesh", Tag: "1"}
	s.Misc = v1alpha3.MiscSpec{RepoServerImage: "repo:1"}
	s.Connector = v1alpha3.DefaultConnector()
	s.Sidecar.CompressConfig = ptr.To(false)
	s.Sidecar.HoldApplicationUntilProxyStarts = ptr.To(false)
	s.Sidecar.GracefulExitUntilDownstreamEnds = ptr.To(false)
	s.Sidecar.InitResources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	s.Sidecar.HealthcheckResources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}
	s.Sidecar.XNetDNSProxy.Enable = true
	return s
}

func TestHubOnlyRoundTrip(t *testing.T) {
	want := hubOnlySpec()
	h, sc := HubOnlyOf(&want), SidecarOf(&want.Sidecar)
	var got v1alpha3.MeshConfigSpec
	h.ApplyTo(&got)
	sc.ApplyTo(&got.Sidecar)
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("HubOnlyOf/SidecarOf then ApplyTo:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestKeepRestoreHub: defaults leave no annotation; data survives
// KeepHub → RestoreHub and the annotation is consumed.
func TestKeepRestoreHub(t *testing.T) {
	for _, tc := range []struct {
		name           string
		kept           HubOnly
		wantAnnotation bool
	}{
		{"defaults only", DefaultHubOnly(), false},
		{"a changed section", func() HubOnly { h := DefaultHubOnly(); h.RepoServer.Port = 6060; return h }(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := &metav1.ObjectMeta{}
			kept := tc.kept
			if err := KeepHub(meta, &kept, ptr.To(DefaultHubOnly())); err != nil {
				t.Fatal(err)
			}
			if _, ok := meta.Annotations[lossless.AnnotationV1Alpha3Fields]; ok != tc.wantAnnotation {
				t.Fatalf("annotation present = %v, want %v: %v", ok, tc.wantAnnotation, meta.Annotations)
			}
			var restored HubOnly
			if err := RestoreHub(meta, &restored, ptr.To(DefaultHubOnly())); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(restored, tc.kept) {
				t.Errorf("restored %+v, want %+v", restored, tc.kept)
			}
			if len(meta.Annotations) != 0 {
				t.Errorf("RestoreHub left annotations %v", meta.Annotations)
			}
		})
	}
}

func TestKeepRestoreLegacy(t *testing.T) {
	type driver struct {
		Name string `json:"sidecarName"`
	}
	for _, tc := range []struct {
		name           string
		legacy         Legacy[driver]
		wantAnnotation string
	}{
		{"empty", Legacy[driver]{}, ""},
		{"class only", Legacy[driver]{Sidecar: LegacySidecar[driver]{SidecarClass: "pipy"}}, `{"sidecar":{"sidecarClass":"pipy"}}`},
		{"init image only", Legacy[driver]{Sidecar: LegacySidecar[driver]{InitContainerImage: "fsm-init:1"}}, `{"sidecar":{"initContainerImage":"fsm-init:1"}}`},
		{"drivers", Legacy[driver]{Sidecar: LegacySidecar[driver]{SidecarDrivers: []driver{{Name: "pipy"}}}}, `{"sidecar":{"sidecarDrivers":[{"sidecarName":"pipy"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := &metav1.ObjectMeta{}
			if err := KeepLegacy(meta, tc.legacy); err != nil {
				t.Fatal(err)
			}
			if got := meta.Annotations[lossless.AnnotationV1Alpha2Fields]; got != tc.wantAnnotation {
				t.Fatalf("annotation = %q, want %q", got, tc.wantAnnotation)
			}
			got, err := RestoreLegacy[driver](meta)
			if err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(got, tc.legacy) {
				t.Errorf("restored %+v, want %+v", got, tc.legacy)
			}
		})
	}
}
