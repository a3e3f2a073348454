package injector

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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

// An IPv6 exclusion range from the MeshConfig or from a pod annotation is
// accepted and changes nothing: the mesh never intercepts IPv6, so the pod's
// fsm-init script is FSM's IPv4 rule set, with the IPv4 ranges only.
func TestMutateIPv6Exclusions(t *testing.T) {
	script := func(s Settings, ann map[string]string) string {
		t.Helper()
		mut, err := mutateWith(t, simplePod(ann), nil, s, testMesh)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range mut.Pod.Spec.InitContainers {
			if c.Name == InitContainerName {
				return c.Args[len(c.Args)-1]
			}
		}
		t.Fatal("no fsm-init container")
		return ""
	}
	s := DefaultSettings()
	s.OutboundIPRangeExclusionList = []string{"10.1.0.0/16", "fd00::/8"}
	got := script(s, map[string]string{OutboundIPRangeExclusionAnnotation: "2001:db8::/32,172.16.0.0/12"})

	s.OutboundIPRangeExclusionList = []string{"10.1.0.0/16"}
	want := script(s, map[string]string{OutboundIPRangeExclusionAnnotation: "172.16.0.0/12"})
	if got != want {
		t.Errorf("IPv6 exclusions changed the fsm-init script:\n%s\nwant:\n%s", got, want)
	}
	for _, r := range []string{"-d 10.1.0.0/16 -j RETURN\n", "-d 172.16.0.0/12 -j RETURN\n"} {
		if !strings.Contains(got, r) {
			t.Errorf("script lacks %q:\n%s", r, got)
		}
	}
	if strings.Contains(got, "ip6tables") || strings.Contains(got, "::") {
		t.Errorf("script holds IPv6 rules:\n%s", got)
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(*Settings)
		want string // "" = valid
	}{
		{"IPv6 exclusion ranges", func(s *Settings) {
			s.OutboundIPRangeExclusionList = []string{"fd00::/8", "10.0.0.0/8"}
			s.OutboundIPRangeInclusionList = []string{"10.96.0.0/12"}
		}, ""},
		{"IPv6 inclusion range", func(s *Settings) { s.OutboundIPRangeInclusionList = []string{"10.96.0.0/12", "fd00:10:96::/112"} },
			`MeshConfig spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: "fd00:10:96::/112": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`},
		{"any RSA size from 2048 to 4096", func(s *Settings) { s.CertKeyBitSize = 2560 }, ""},
		{"log level", func(s *Settings) { s.LogLevel = "verbose" },
			`MeshConfig spec.sidecar.logLevel: Unsupported value: "verbose": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`},
		{"local proxy mode", func(s *Settings) { s.LocalProxyMode = "podip" },
			`MeshConfig spec.sidecar.localProxyMode: Unsupported value: "podip": supported values: "Localhost", "PodIP"`},
		{"interception mode", func(s *Settings) { s.InterceptionMode = "Pod" },
			`MeshConfig spec.traffic.interceptionMode: Unsupported value: "Pod": supported values: "NodeLevel", "PodLevel"`},
		{"interface name too long", func(s *Settings) { s.NetworkInterfaceExclusionList = []string{"eth0", "sixteen-bytes-xx"} },
			`MeshConfig spec.traffic.networkInterfaceExclusionList[1]: Invalid value: "sixteen-bytes-xx": must be a Linux network interface name`},
		{"init resources claim", func(s *Settings) { s.InitResources.Claims = []corev1.ResourceClaim{{Name: "gpu"}} },
			`MeshConfig spec.sidecar.initResources.claims[0]: Forbidden: claim "gpu"`},
		{"every problem at once", func(s *Settings) { s.OutboundPortExclusionList = []int{0}; s.CertKeyBitSize = 8192 },
			"MeshConfig [spec.traffic.outboundPortExclusionList[0]: Invalid value: 0: should be greater than or equal to 1, spec.certificate.certKeyBitSize: Invalid value: 8192: should be less than or equal to 4096]"},
	} {
		s := DefaultSettings()
		tc.set(&s)
		err := s.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want prefix %q", tc.name, err, tc.want)
		}
	}
}

// TestSettingsValidateFieldsInEveryPod: spec.repoServer.port (the sidecar's
// --admin-port and repo URL) and spec.sidecar.sidecarImage go into every
// injected pod, so a stored MeshConfig with a value the validator denies is
// set aside like any other (CachedMeshConfig keeps the last valid settings)
// instead of making the apiserver refuse every meshed pod.
func TestSettingsValidateFieldsInEveryPod(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*configv1alpha3.MeshConfig)
		want string // "" = valid
	}{
		{"repoServer.port unset: the default", func(mc *configv1alpha3.MeshConfig) { mc.Spec.RepoServer.Port = 0 }, ""},
		{"repoServer.port 65535", func(mc *configv1alpha3.MeshConfig) { mc.Spec.RepoServer.Port = 65535 }, ""},
		{"repoServer.port out of range", func(mc *configv1alpha3.MeshConfig) { mc.Spec.RepoServer.Port = 70000 },
			"MeshConfig spec.repoServer.port: Invalid value: 70000: should be less than or equal to 65535"},
		// FSM reads it as 6060 (TestMeshConfigValuesReadAsFSMReadsThem).
		{"repoServer.port negative: the default, as FSM reads it", func(mc *configv1alpha3.MeshConfig) { mc.Spec.RepoServer.Port = -1 }, ""},
		{"sidecarImage unset", func(mc *configv1alpha3.MeshConfig) { mc.Spec.Sidecar.SidecarImage = "" }, ""},
		{"sidecarImage with a registry port and digest", func(mc *configv1alpha3.MeshConfig) {
			mc.Spec.Sidecar.SidecarImage = "registry:5000/flomesh/pipy@sha256:" + strings.Repeat("a", 64)
		}, ""},
		{"sidecarImage with trailing whitespace", func(mc *configv1alpha3.MeshConfig) { mc.Spec.Sidecar.SidecarImage = "flomesh/pipy:1.5.12 " },
			`MeshConfig spec.sidecar.sidecarImage: Invalid value: "flomesh/pipy:1.5.12 ": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`},
		{"sidecarImage in capitals", func(mc *configv1alpha3.MeshConfig) { mc.Spec.Sidecar.SidecarImage = "Flomesh/Pipy" },
			`MeshConfig spec.sidecar.sidecarImage: Invalid value: "Flomesh/Pipy": must be a container image reference`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := &configv1alpha3.MeshConfig{}
			tc.edit(mc)
			err := SettingsFromMeshConfig(mc).Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}
