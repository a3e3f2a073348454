package injector

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

func TestSettingsFromMeshConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := &configv1alpha3.MeshConfig{}
	if err := yaml.UnmarshalStrict(raw, mc); err != nil {
		t.Fatal(err)
	}
	// The preset with FSM's Helm defaults injects like the built-in defaults,
	// apart from what the preset sets explicitly.
	got := SettingsFromMeshConfig(mc)
	want := DefaultSettings()
	want.SidecarImage = mc.Spec.Sidecar.SidecarImage
	want.LogLevel = mc.Spec.Sidecar.LogLevel
	want.RepoServerIPAddr = mc.Spec.RepoServer.IPAddr
	want.RepoServerCodebase = mc.Spec.RepoServer.Codebase
	want.CertKeyBitSize = mc.Spec.Certificate.CertKeyBitSize
	want.Resources, want.InitResources, want.HealthcheckResources = got.Resources, got.InitResources, got.HealthcheckResources
	want.OutboundIPRangeExclusionList, want.OutboundIPRangeInclusionList = got.OutboundIPRangeExclusionList, got.OutboundIPRangeInclusionList
	want.NetworkInterfaceExclusionList = got.NetworkInterfaceExclusionList
	want.OutboundPortExclusionList, want.InboundPortExclusionList = got.OutboundPortExclusionList, got.InboundPortExclusionList
	want.TLSMinProtocolVersion, want.TLSMaxProtocolVersion = got.TLSMinProtocolVersion, got.TLSMaxProtocolVersion
	want.CipherSuites, want.ECDHCurves = got.CipherSuites, got.ECDHCurves
	if !reflect.DeepEqual(got, want) {
		t.Errorf("preset settings:\n got %+v\nwant %+v", got, want)
	}

	// Every mapped field.
	mc.Spec.Sidecar.HoldApplicationUntilProxyStarts = ptr.To(false)
	mc.Spec.Sidecar.GracefulExitUntilDownstreamEnds = ptr.To(false)
	mc.Spec.Sidecar.LocalProxyMode = configv1alpha3.LocalProxyModePodIP
	mc.Spec.Sidecar.LocalDNSProxy.Enable = true
	mc.Spec.Sidecar.EnablePrivilegedInitContainer = true
	mc.Spec.RepoServer.Port = 6070
	mc.Spec.Traffic.InterceptionMode = InterceptionNodeLevel
	mc.Spec.Traffic.OutboundPortExclusionList = []int32{6379}
	mc.Spec.Traffic.InboundPortExclusionList = []int32{9090}
	got = SettingsFromMeshConfig(mc)
	if got.HoldApplicationUntilProxyStarts || got.GracefulExitUntilDownstreamEnds || got.LocalProxyMode != LocalProxyModePodIP ||
		!got.LocalDNSProxy || !got.EnablePrivilegedInitContainer || got.RepoServerPort != 6070 || got.InterceptionMode != InterceptionNodeLevel ||
		!reflect.DeepEqual(got.OutboundPortExclusionList, []int{6379}) || !reflect.DeepEqual(got.InboundPortExclusionList, []int{9090}) {
		t.Errorf("fields not mapped: %+v", got)
	}
}
