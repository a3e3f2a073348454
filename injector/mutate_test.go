package injector

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

func simplePod(ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app", Annotations: ann},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
}

func mutateWith(t *testing.T, pod *corev1.Pod, nsAnn map[string]string, s Settings, m Mesh) (*Mutation, error) {
	t.Helper()
	return Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nsAnn), Settings: s, Mesh: m, ProxyUUID: "u-1"})
}

// TestMutateAnnotationErrors checks every annotation's bad values are denied
// with the exact message users see.
func TestMutateAnnotationErrors(t *testing.T) {
	tests := []struct {
		name  string
		pod   map[string]string
		ns    map[string]string
		mesh  func(*Mesh)
		set   func(*Settings)
		probe *corev1.Probe
		want  string
	}{
		{name: "outbound port not a number", pod: map[string]string{OutboundPortExclusionAnnotation: "80,abc"},
			want: "Invalid port value 'abc' specified for annotation 'flomesh.io/outbound-port-exclusion-list'"},
		{name: "outbound port zero", pod: map[string]string{OutboundPortExclusionAnnotation: "0"},
			want: "Invalid port value '0' specified for annotation 'flomesh.io/outbound-port-exclusion-list'"},
		{name: "inbound port negative", pod: map[string]string{InboundPortExclusionAnnotation: "-1"},
			want: "Invalid port value '-1' specified for annotation 'flomesh.io/inbound-port-exclusion-list'"},
		{name: "inbound port too big", pod: map[string]string{InboundPortExclusionAnnotation: "65536"},
			want: "Invalid port value '65536' specified for annotation 'flomesh.io/inbound-port-exclusion-list'"},
		{name: "port list empty", pod: map[string]string{InboundPortExclusionAnnotation: ""},
			want: "Invalid port value '' specified for annotation 'flomesh.io/inbound-port-exclusion-list'"},
		{name: "port list trailing comma", pod: map[string]string{OutboundPortExclusionAnnotation: "80,"},
			want: "Invalid port value '' specified for annotation 'flomesh.io/outbound-port-exclusion-list'"},
		{name: "ip exclusion not a CIDR", pod: map[string]string{OutboundIPRangeExclusionAnnotation: "10.0.0.1"},
			want: "Invalid IP range '10.0.0.1' specified for annotation 'flomesh.io/outbound-ip-range-exclusion-list'"},
		{name: "ip inclusion garbage", pod: map[string]string{OutboundIPRangeInclusionAnnotation: "10.0.0.0/8,foo"},
			want: "Invalid IP range 'foo' specified for annotation 'flomesh.io/outbound-ip-range-inclusion-list'"},
		{name: "ip exclusion IPv6 prefix too long", pod: map[string]string{OutboundIPRangeExclusionAnnotation: "fd00::/129"},
			want: "Invalid IP range 'fd00::/129' specified for annotation 'flomesh.io/outbound-ip-range-exclusion-list'"},
		{name: "ip inclusion IPv6", pod: map[string]string{OutboundIPRangeInclusionAnnotation: "10.96.0.0/12, fd00::/8"},
			want: "Invalid IP range 'fd00::/8' specified for annotation 'flomesh.io/outbound-ip-range-inclusion-list': the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted"},
		{name: "meshconfig IPv6 inclusion", set: func(s *Settings) { s.OutboundIPRangeInclusionList = []string{"fd00::/8"} },
			want: `MeshConfig spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "fd00::/8": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`},
		{name: "hold invalid", pod: map[string]string{HoldApplicationAnnotation: "sometimes"},
			want: `invalid annotation value for key "flomesh.io/hold-application-until-proxy-starts": sometimes`},
		{name: "hold invalid on namespace", ns: map[string]string{HoldApplicationAnnotation: "2"},
			want: `invalid annotation value for key "flomesh.io/hold-application-until-proxy-starts": 2 (on the namespace)`},
		{name: "graceful invalid", pod: map[string]string{GracefulExitAnnotation: "x"},
			want: `invalid annotation value for key "flomesh.io/graceful-exit-until-downstream-ends": x`},
		{name: "native invalid", pod: map[string]string{SidecarNativeAnnotation: "maybe"},
			want: `invalid annotation value for key "flomesh.io/sidecar-native": maybe`},
		{name: "metrics invalid", ns: map[string]string{MetricsAnnotation: "on"},
			want: `Invalid value specified for annotation "flomesh.io/metrics": on`},
		// FSM's messages print the value unquoted: whitespace around it is
		// quoted after them, or "true\n" reads as the valid "true".
		{name: "hold with a line end", pod: map[string]string{HoldApplicationAnnotation: "true\n"},
			want: "invalid annotation value for key \"flomesh.io/hold-application-until-proxy-starts\": true\n (the value is \"true\\n\": remove the whitespace or control characters)"},
		{name: "graceful with a space on namespace", ns: map[string]string{GracefulExitAnnotation: "yes "},
			want: `invalid annotation value for key "flomesh.io/graceful-exit-until-downstream-ends": yes  (on the namespace) (the value is "yes ": remove the whitespace or control characters)`},
		{name: "native with a no-break space", pod: map[string]string{SidecarNativeAnnotation: "\u00a0true"},
			want: "invalid annotation value for key \"flomesh.io/sidecar-native\": \u00a0true (the value is \"\\u00a0true\": remove the whitespace or control characters)"},
		{name: "metrics with a line end", ns: map[string]string{MetricsAnnotation: "Enabled\n"},
			want: "Invalid value specified for annotation \"flomesh.io/metrics\": enabled\n (the value is \"Enabled\\n\": remove the whitespace or control characters)"},
		{name: "resource limit unparsable", pod: map[string]string{SidecarResourceLimitsPrefix + "cpu": "lots"},
			want: `invalid quantity "lots" specified for annotation "flomesh.io/sidecar-resource-limits-cpu": must be a quantity such as 500m, 2 or 64Mi`},
		{name: "resource request unparsable on namespace", ns: map[string]string{SidecarResourceRequestsPrefix + "ephemeral-storage": "1Q"},
			want: `invalid quantity "1Q" specified for annotation "flomesh.io/sidecar-resource-requests-ephemeral-storage" (on the namespace): must be a quantity such as 500m, 2 or 64Mi`},
		// Parsable, at a cost that grows with the exponent's magnitude
		// (this one about 1.5 s, one more digit a minute): refused unparsed,
		// since every pod create shares the injector's CPU.
		{name: "resource limit with a huge exponent", pod: map[string]string{SidecarResourceLimitsPrefix + "cpu": "1e-9999999"},
			want: `invalid quantity "1e-9999999" specified for annotation "flomesh.io/sidecar-resource-limits-cpu": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`},
		{name: "resource request with too many digits on namespace", ns: map[string]string{SidecarResourceRequestsPrefix + "memory": "1" + strings.Repeat("0", 64)},
			want: `invalid quantity "1` + strings.Repeat("0", 64) + `" specified for annotation "flomesh.io/sidecar-resource-requests-memory" (on the namespace): must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`},
		// Parsable but refused by the apiserver for the sidecar container:
		// denied before any Secret, with the rules MeshConfig's are held to.
		{name: "resource limit negative", pod: map[string]string{SidecarResourceLimitsPrefix + "cpu": "-1"},
			want: `invalid value "-1" specified for annotation "flomesh.io/sidecar-resource-limits-cpu": sidecar.resources.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0`},
		{name: "resource request negative on namespace", ns: map[string]string{SidecarResourceRequestsPrefix + "memory": "-64Mi"},
			want: `invalid value "-64Mi" specified for annotation "flomesh.io/sidecar-resource-requests-memory" (on the namespace): sidecar.resources.requests[memory]: Invalid value: "-64Mi": must be greater than or equal to 0`},
		{name: "resource storage is not a container's", pod: map[string]string{SidecarResourceLimitsPrefix + "storage": "1Gi"},
			want: `invalid value "1Gi" specified for annotation "flomesh.io/sidecar-resource-limits-storage": sidecar.resources.limits[storage]: Invalid value: "storage": must be cpu, memory, ephemeral-storage`},
		{name: "resource request above the limit, both annotations", pod: map[string]string{SidecarResourceLimitsPrefix + "memory": "64Mi", SidecarResourceRequestsPrefix + "memory": "128Mi"},
			want: `invalid value "128Mi" specified for annotation "flomesh.io/sidecar-resource-requests-memory": sidecar.resources.requests[memory]: Invalid value: "128Mi": must be less than or equal to the memory limit (64Mi) (the limit: annotation "flomesh.io/sidecar-resource-limits-memory": "64Mi")`},
		{name: "resource request annotation above the MeshConfig limit", pod: map[string]string{SidecarResourceRequestsPrefix + "cpu": "2"},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{"cpu": resource.MustParse("1")}}
			},
			want: `invalid value "2" specified for annotation "flomesh.io/sidecar-resource-requests-cpu": sidecar.resources.requests[cpu]: Invalid value: "2": must be less than or equal to the cpu limit (1) (the limit: MeshConfig spec.sidecar.resources.limits[cpu])`},
		{name: "resource limit annotation on namespace below the MeshConfig request", ns: map[string]string{SidecarResourceLimitsPrefix + "cpu": "100m"},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": resource.MustParse("500m")}}
			},
			want: `invalid value "100m" specified for annotation "flomesh.io/sidecar-resource-limits-cpu" (on the namespace): sidecar.resources.limits[cpu]: must be greater than or equal to the cpu request (500m, MeshConfig spec.sidecar.resources.requests[cpu])`},
		{name: "resource limit on the pod overrides a bad one on the namespace", pod: map[string]string{SidecarResourceLimitsPrefix + "memory": "64Mi"},
			ns:   map[string]string{SidecarResourceLimitsPrefix + "memory": "-1", SidecarResourceRequestsPrefix + "memory": "128Mi"},
			want: `invalid value "128Mi" specified for annotation "flomesh.io/sidecar-resource-requests-memory" (on the namespace): sidecar.resources.requests[memory]: Invalid value: "128Mi": must be less than or equal to the memory limit (64Mi) (the limit: annotation "flomesh.io/sidecar-resource-limits-memory": "64Mi")`},
		{name: "sidecar image annotation malformed", pod: map[string]string{SidecarImageAnnotation: "Flomesh/Pipy:1.5"},
			want: `invalid image "Flomesh/Pipy:1.5" specified for annotation "flomesh.io/sidecar-image": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format: repository name (Pipy) must be lowercase`},
		{name: "sidecar image annotation malformed on namespace", ns: map[string]string{SidecarImageAnnotation: "pipy:1.5 latest"},
			want: `invalid image "pipy:1.5 latest" specified for annotation "flomesh.io/sidecar-image" (on the namespace): must be a container image reference`},
		{name: "no sidecar image", mesh: func(m *Mesh) { m.SidecarImage = "" },
			want: "sidecar image not set: set MeshConfig spec.sidecar.sidecarImage, flag --sidecar-image or env FSM_DEFAULT_SIDECAR_IMAGE"},
		{name: "no init image", mesh: func(m *Mesh) { m.InitImage = "" },
			want: "fsm-init container image not set: set flag --init-container-image or env FSM_DEFAULT_INIT_CONTAINER_IMAGE"},
		{name: "meshconfig bad IP range", set: func(s *Settings) { s.OutboundIPRangeExclusionList = []string{"10.0.0.0/8", "fd00::/129"} },
			want: `MeshConfig spec.traffic.outboundIPRangeExclusionList[1]: Invalid value: "fd00::/129": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "meshconfig bad interface", set: func(s *Settings) { s.NetworkInterfaceExclusionList = []string{"eth0$(reboot)"} },
			want: `MeshConfig spec.traffic.networkInterfaceExclusionList[0]: Invalid value: "eth0$(reboot)": must be a Linux network interface name`},
		{name: "meshconfig bad port", set: func(s *Settings) { s.InboundPortExclusionList = []int{70000} },
			want: "MeshConfig spec.traffic.inboundPortExclusionList[0]: Invalid value: 70000: should be less than or equal to 65535"},
		{name: "meshconfig request above limit", set: func(s *Settings) {
			s.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{"cpu": resource.MustParse("1")}, Requests: corev1.ResourceList{"cpu": resource.MustParse("2")}}
		}, want: `MeshConfig spec.sidecar.resources.requests[cpu]: Invalid value: "2": must be less than or equal to the cpu limit (1)`},
		{name: "meshconfig bad key size", set: func(s *Settings) { s.CertKeyBitSize = 1024 },
			want: "MeshConfig spec.certificate.certKeyBitSize: Invalid value: 1024: should be greater than or equal to 2048"},
		{name: "tcp probe without healthcheck image", mesh: func(m *Mesh) { m.HealthcheckImage = "" },
			probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrStr("8080")}}},
			want:  "the pod has TCP or HTTPS probes, which need the fsm-healthcheck container, and its image is not set: set flag --healthcheck-container-image or env FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE"},
		{name: "repo server host name invalid", set: func(s *Settings) { s.RepoServerIPAddr = "repo server" },
			want: `MeshConfig spec.repoServer.ipaddr: Invalid value: "repo server": must be an IP address or a host name`},
		{name: "repo server address with a zone", set: func(s *Settings) { s.RepoServerIPAddr = "fe80::1%eth0" },
			want: `MeshConfig spec.repoServer.ipaddr: Invalid value: "fe80::1%eth0": must be an IP address without a zone (%eth0)`},
		{name: "local DNS proxy without the controller Service", set: func(s *Settings) { s.LocalDNSProxy = true },
			want: "MeshConfig spec.sidecar.localDNSProxy.enable is true, but Service fsm-system/fsm-controller does not exist: its ClusterIP is the DNS server of meshed pods; install FSM's controller or disable the local DNS proxy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMesh
			if tc.mesh != nil {
				tc.mesh(&m)
			}
			s := DefaultSettings()
			if tc.set != nil {
				tc.set(&s)
			}
			pod := simplePod(tc.pod)
			pod.Spec.Containers[0].LivenessProbe = tc.probe
			_, err := mutateWith(t, pod, tc.ns, s, m)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func intOrStr(s string) intstr.IntOrString { return intstr.Parse(s) }

func TestSidecarImagePrecedence(t *testing.T) {
	tests := []struct {
		name     string
		pod, ns  map[string]string
		settings string
		want     string
	}{
		{"pod annotation wins", map[string]string{SidecarImageAnnotation: "pod"}, map[string]string{SidecarImageAnnotation: "ns"}, "mc", "pod"},
		{"namespace annotation", nil, map[string]string{SidecarImageAnnotation: "ns"}, "mc", "ns"},
		{"meshconfig", nil, nil, "mc", "mc"},
		{"default", nil, nil, "", testMesh.SidecarImage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			s.SidecarImage = tc.settings
			mut, err := mutateWith(t, simplePod(tc.pod), tc.ns, s, testMesh)
			if err != nil {
				t.Fatal(err)
			}
			if got := mut.Pod.Spec.Containers[0].Image; got != tc.want {
				t.Fatalf("image %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSidecarResources(t *testing.T) {
	s := DefaultSettings()
	s.Resources = corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
	}
	pod := simplePod(map[string]string{SidecarResourceLimitsPrefix + "cpu": "2"})
	ns := map[string]string{SidecarResourceLimitsPrefix + "cpu": "3", SidecarResourceRequestsPrefix + "memory": "128Mi"}
	mut, err := mutateWith(t, pod, ns, s, testMesh)
	if err != nil {
		t.Fatal(err)
	}
	r := mut.Pod.Spec.Containers[0].Resources
	check := func(l corev1.ResourceList, name corev1.ResourceName, want string) {
		t.Helper()
		q := l[name]
		if q.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s = %s, want %s", name, q.String(), want)
		}
	}
	check(r.Limits, corev1.ResourceCPU, "2")          // pod beats namespace and MeshConfig
	check(r.Limits, corev1.ResourceMemory, "1Gi")     // MeshConfig kept
	check(r.Requests, corev1.ResourceMemory, "128Mi") // namespace
	check(r.Requests, corev1.ResourceCPU, "100m")
	if q := s.Resources.Limits[corev1.ResourceCPU]; q.Cmp(resource.MustParse("1")) != 0 {
		t.Error("Mutate changed the settings' resources")
	}
}

// TestInjectedContainerNames: a pod that already has a container named like
// one the injector adds is denied, naming it, rather than injected into a
// pod the apiserver refuses for a duplicate name after its Secret is
// written. A copy of an injected pod (the bootstrap volume: Reinject) keeps
// its containers as before (golden case debug-copy too).
func TestInjectedContainerNames(t *testing.T) {
	tcpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrStr("8080")}}}
	for _, tc := range []struct {
		name     string
		init     []string // init container names, before the pod's own
		extra    []string // container names after "app"
		probe    *corev1.Probe
		reinject bool
		want     string // "" = injected
	}{
		{name: "container named sidecar", extra: []string{"db", SidecarContainerName},
			want: `spec.containers[2].name: "sidecar" is the injector's; rename it or opt the pod out with annotation flomesh.io/sidecar-injection: disabled`},
		{name: "init container named fsm-init", init: []string{"migrate", InitContainerName},
			want: `spec.initContainers[1].name: "fsm-init" is the injector's; rename it or opt the pod out with annotation flomesh.io/sidecar-injection: disabled`},
		{name: "init container named sidecar", init: []string{SidecarContainerName},
			want: `spec.initContainers[0].name: "sidecar" is the injector's`},
		{name: "fsm-healthcheck when a TCP probe adds it", extra: []string{HealthcheckContainerName}, probe: tcpProbe,
			want: `spec.containers[1].name: "fsm-healthcheck" is the injector's`},
		{name: "fsm-healthcheck when none is added", extra: []string{HealthcheckContainerName}},
		{name: "other names", init: []string{"sidecar-init"}, extra: []string{"sidecars", "Sidecar"}},
		{name: "copy of an injected pod", init: []string{InitContainerName}, extra: []string{SidecarContainerName}, reinject: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			pod.Spec.Containers[0].LivenessProbe = tc.probe
			for _, n := range tc.init {
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
			}
			for _, n := range tc.extra {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
			}
			mut, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: "u-1", Reinject: tc.reinject})
			if tc.want != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
					t.Fatalf("err = %v, want prefix %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !mut.NeedsSecret {
				t.Fatal("not injected")
			}
			seen := map[string]bool{}
			for _, list := range [][]corev1.Container{mut.Pod.Spec.InitContainers, mut.Pod.Spec.Containers} {
				for _, c := range list {
					if seen[c.Name] {
						t.Fatalf("injected pod has two containers named %q", c.Name)
					}
					seen[c.Name] = true
				}
			}
		})
	}
}

// TestNativeSidecarAppSidecarProbes: the probes of the app's own native
// sidecars (init containers with restartPolicy Always) are left as written,
// in native mode too. The proxy's health ports forward to the target FSM's
// controller configures, which it takes from the pod's regular containers
// only (the first probe of each kind; pipy's probes.js ignores the request's
// headers): rewritten, such a probe would reach an app container's target, or
// nothing, and a startup probe would never pass.
func TestNativeSidecarAppSidecarProbes(t *testing.T) {
	authproxy := corev1.Container{
		Name:          "authproxy",
		Image:         "authproxy",
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports:         []corev1.ContainerPort{{Name: "admin", ContainerPort: 9000}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("admin")},
		}, TimeoutSeconds: 1},
		StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("admin")},
		}, TimeoutSeconds: 2},
	}
	web := corev1.Container{
		Name:  "web",
		Image: "nginx",
		Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("admin")},
		}, TimeoutSeconds: 1},
	}
	find := func(list []corev1.Container, name string) *corev1.Container {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
		t.Fatalf("container %q missing", name)
		return nil
	}
	for _, native := range []bool{true, false} {
		t.Run(fmt.Sprintf("native=%v", native), func(t *testing.T) {
			pod := simplePod(map[string]string{SidecarNativeAnnotation: fmt.Sprint(native)})
			pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate"}, *authproxy.DeepCopy()}
			pod.Spec.Containers = []corev1.Container{*web.DeepCopy()}
			mut, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			// The app container's probe is rewritten either way, its named
			// port resolved in its own ports.
			if g := find(mut.Pod.Spec.Containers, "web").ReadinessProbe.HTTPGet; g.Path != HealthcheckPath || g.Port.IntValue() != int(ReadinessProbePort) ||
				!hasHeader(g.HTTPHeaders, originalHTTPPortHeader, "8080") {
				t.Errorf("app container readiness probe %+v, want %s on %d with %s 8080", g, HealthcheckPath, ReadinessProbePort, originalHTTPPortHeader)
			}
			got := find(mut.Pod.Spec.InitContainers, "authproxy")
			boot := mut.Bootstrap
			if want := (HealthProbe{Path: "/healthz", Port: 8080, IsHTTP: true, Timeout: time.Second}); boot.OriginalHealthProbes[probeReadiness] != want {
				t.Errorf("OriginalHealthProbes readiness %+v, want the app container's %+v", boot.OriginalHealthProbes[probeReadiness], want)
			}
			if !reflect.DeepEqual(*got, authproxy) {
				t.Errorf("restartable init container changed:\n got %+v\nwant %+v", *got, authproxy)
			}
			if _, ok := boot.ContainerHealthProbes["authproxy"]; ok {
				t.Errorf("ContainerHealthProbes records authproxy: %+v", boot.ContainerHealthProbes)
			}
			for _, c := range append(mut.Pod.Spec.InitContainers, mut.Pod.Spec.Containers...) {
				if c.Name == HealthcheckContainerName {
					t.Error("fsm-healthcheck added for an init container's TCP probe")
				}
			}
			if native {
				var order []string
				for _, c := range mut.Pod.Spec.InitContainers {
					order = append(order, c.Name)
				}
				if want := []string{InitContainerName, SidecarContainerName, "migrate", "authproxy"}; !slices.Equal(order, want) {
					t.Errorf("init containers %v, want %v", order, want)
				}
			}
		})
	}
}

func hasHeader(headers []corev1.HTTPHeader, name, value string) bool {
	return slices.Contains(headers, corev1.HTTPHeader{Name: name, Value: value})
}

func TestControllerOf(t *testing.T) {
	tr := true
	tests := []struct {
		refs       []metav1.OwnerReference
		kind, name string
	}{
		{nil, "", ""},
		{[]metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d4f", Controller: &tr}}, "Deployment", "web"},
		{[]metav1.OwnerReference{{Kind: "ReplicaSet", Name: "standalone", Controller: &tr}}, "ReplicaSet", "standalone"},
		{[]metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", Controller: &tr}}, "StatefulSet", "db"},
		{[]metav1.OwnerReference{{Kind: "ConfigMap", Name: "not-controller"}}, "", ""},
		{[]metav1.OwnerReference{{Kind: "StatefulSet", Name: "adopter", Controller: ptr.To(false)}, {Kind: "Job", Name: "j", Controller: &tr}}, "Job", "j"},
	}
	for _, tc := range tests {
		k, n := controllerOf(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.refs}})
		if k != tc.kind || n != tc.name {
			t.Errorf("controllerOf(%v) = %s/%s, want %s/%s", tc.refs, k, n, tc.kind, tc.name)
		}
	}
}

func TestRepoURL(t *testing.T) {
	// FSM's controller serves each sidecar's configuration under the
	// certificate CN without the trust domain.
	prefix := CNPrefix("u", "sa", "ns")
	if prefix != "u.sidecar.sa.ns" {
		t.Fatalf("CNPrefix = %s", prefix)
	}
	tests := []struct {
		ip, codebase string
		port         int
		want         string
	}{
		{"127.0.0.1", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"127.1.2.3", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		// Not an IP address, but FSM reads any 127. prefix as loopback.
		{"127.1", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"localhost", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"LocalHost", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"::1", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"10.1.2.3", "", 6061, "http://10.1.2.3:6061/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"repo.example.com", "", 6060, "http://repo.example.com:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"fsm-controller.other-ns", "", 6060, "http://fsm-controller.other-ns:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"127.0.0.1", "mesh-a", 6060, "http://fsm-controller.fsm-system:6060/repo/mesh-a/fsm-sidecar/u.sidecar.sa.ns/"},
		{"127.0.0.1", "/cb/", 6060, "http://fsm-controller.fsm-system:6060/repo/cb/fsm-sidecar/u.sidecar.sa.ns/"},
		// FSM's controller publishes under the codebase with one "/"
		// trimmed from each end (GetRepoServerCodebase), and Pipy's repo
		// matches names exactly: the sidecar must ask for that name.
		{"127.0.0.1", "cb//", 6060, "http://fsm-controller.fsm-system:6060/repo/cb//fsm-sidecar/u.sidecar.sa.ns/"},
		{"127.0.0.1", "//cb", 6060, "http://fsm-controller.fsm-system:6060/repo//cb/fsm-sidecar/u.sidecar.sa.ns/"},
		{"127.0.0.1", "/", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"fd00::1", "", 6060, "http://[fd00::1]:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		// The form FSM's controller and sidecar both reach, as FSM writes it.
		{"[fd00::1]", "", 6060, "http://[fd00::1]:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"[FD00:0::1]", "", 6060, "http://[fd00::1]:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
		{"[::1]", "", 6060, "http://fsm-controller.fsm-system:6060/repo/fsm-sidecar/u.sidecar.sa.ns/"},
	}
	for _, tc := range tests {
		s := DefaultSettings()
		s.RepoServerIPAddr, s.RepoServerCodebase, s.RepoServerPort = tc.ip, tc.codebase, tc.port
		got, err := repoURL(s, testMesh, prefix)
		if err != nil || got != tc.want {
			t.Errorf("repoURL(%q,%q,%d) = %s, %v; want %s", tc.ip, tc.codebase, tc.port, got, err, tc.want)
		}
	}
}

func TestLocalDNS(t *testing.T) {
	svc := func(ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: ControllerServiceName}, Spec: corev1.ServiceSpec{ClusterIP: ip}}
	}
	tests := []struct {
		name    string
		svc     *corev1.Service
		want    string
		wantErr string
	}{
		{"cluster IP", svc("10.96.200.10"), "10.96.200.10", ""},
		{"IPv6 cluster IP", svc("fd00:10:96::a"), "fd00:10:96::a", ""},
		{"missing", nil, "", "MeshConfig spec.sidecar.localDNSProxy.enable is true, but Service fsm-system/fsm-controller does not exist"},
		{"headless", svc("None"), "", `MeshConfig spec.sidecar.localDNSProxy.enable is true, but Service fsm-system/fsm-controller has no ClusterIP (clusterIP "None"): its ClusterIP is the DNS server of meshed pods; ` +
			`recreate the Service with a ClusterIP (FSM's controller installs it so) or disable the local DNS proxy`},
		{"no IP yet", svc(""), "", `MeshConfig spec.sidecar.localDNSProxy.enable is true, but Service fsm-system/fsm-controller has no ClusterIP (clusterIP ""): its ClusterIP is the DNS server of meshed pods; ` +
			`recreate the Service with a ClusterIP (FSM's controller installs it so) or disable the local DNS proxy`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			s.LocalDNSProxy = true
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: testMesh,
				ProxyUUID: "u-1", ControllerService: tc.svc})
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spec := mut.Pod.Spec
			if spec.DNSPolicy != corev1.DNSNone || spec.DNSConfig == nil || len(spec.DNSConfig.Nameservers) != 1 || spec.DNSConfig.Nameservers[0] != tc.want {
				t.Fatalf("dnsPolicy %s, dnsConfig %+v; want None with nameserver %s", spec.DNSPolicy, spec.DNSConfig, tc.want)
			}
			if got := strings.Join(spec.DNSConfig.Searches, " "); got != "app.svc.cluster.local svc.cluster.local cluster.local" {
				t.Errorf("searches %q", got)
			}
			if o := spec.DNSConfig.Options; len(o) != 1 || o[0].Name != "ndots" || o[0].Value == nil || *o[0].Value != "5" {
				t.Errorf("options %+v, want ndots 5", o)
			}
			if len(spec.HostAliases) != 1 || spec.HostAliases[0].IP != tc.want || strings.Join(spec.HostAliases[0].Hostnames, ",") != "fsm-controller.fsm-system" {
				t.Errorf("hostAliases %+v, want %s fsm-controller.fsm-system", spec.HostAliases, tc.want)
			}
		})
	}
}

func TestPatchSizeIndependentOfAppContainers(t *testing.T) {
	small := simplePod(nil)
	big := simplePod(nil)
	for i := 0; i < 2000; i++ {
		big.Spec.Containers[0].Env = append(big.Spec.Containers[0].Env, corev1.EnvVar{Name: "E" + strings.Repeat("x", i%7), Value: "v"})
	}
	count := func(p *corev1.Pod) int {
		mut, err := mutateWith(t, p, nil, DefaultSettings(), testMesh)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := CreatePatch(p, mut.Pod)
		if err != nil {
			t.Fatal(err)
		}
		assertPatchApplies(t, p, mut.Pod, ops)
		return len(ops)
	}
	if s, b := count(small), count(big); s != b || s > 14 {
		t.Fatalf("patch ops: small pod %d, 2000-env pod %d; want equal and <= 14", s, b)
	}
}

func TestBootstrapKeyAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		choice  certs.KeyAlgorithm
		bits    int
		want    certs.KeyAlgorithm
		wantErr string
	}{
		// Default: ECDSA P-256 whatever MeshConfig says.
		{choice: "", bits: 0, want: certs.ECDSAP256},
		{choice: "", bits: 2048, want: certs.ECDSAP256},
		{choice: "", bits: 4096, want: certs.ECDSAP256},
		// FSM's choice: RSA of certKeyBitSize, else the provider's default.
		{choice: BootstrapKeyFromMeshConfig, bits: 0, want: ""},
		{choice: BootstrapKeyFromMeshConfig, bits: 2048, want: certs.RSA2048},
		{choice: BootstrapKeyFromMeshConfig, bits: 2560, want: "RSA2560"},
		{choice: BootstrapKeyFromMeshConfig, bits: 4096, want: certs.RSA4096},
		// A named algorithm wins over MeshConfig.
		{choice: certs.RSA3072, bits: 2048, want: certs.RSA3072},
		{choice: certs.ECDSAP384, bits: 0, want: certs.ECDSAP384},
		// A bad certKeyBitSize is refused under every choice.
		{choice: "", bits: 1024, wantErr: "MeshConfig spec.certificate.certKeyBitSize: unsupported RSA key size 1024: must be 2048 to 4096 bits"},
		{choice: BootstrapKeyFromMeshConfig, bits: 8192, wantErr: "MeshConfig spec.certificate.certKeyBitSize: unsupported RSA key size 8192: must be 2048 to 4096 bits"},
		{choice: "RSA1024", bits: 0, wantErr: `bootstrap key algorithm: unknown key algorithm "RSA1024"`},
	} {
		got, err := BootstrapKeyAlgorithm(tc.choice, tc.bits)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("(%q, %d): err = %v, want prefix %q", tc.choice, tc.bits, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("(%q, %d) = %q, %v; want %q", tc.choice, tc.bits, got, err, tc.want)
		}
	}

	// Mutate carries the choice to the certificate request.
	for _, choice := range []certs.KeyAlgorithm{"", BootstrapKeyFromMeshConfig} {
		s := DefaultSettings()
		s.CertKeyBitSize = 2048
		m := testMesh
		m.BootstrapKeyAlgorithm = choice
		mut, err := mutateWith(t, simplePod(nil), nil, s, m)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := BootstrapKeyAlgorithm(choice, 2048)
		if mut.KeyAlgorithm != want {
			t.Errorf("choice %q: Mutation.KeyAlgorithm %q, want %q", choice, mut.KeyAlgorithm, want)
		}
	}
}

// TestMetricsAnnotationEmpty: an empty flomesh.io/metrics on the namespace
// is unset, as FSM reads it (pkg/injector/metrics.go): the pod is injected
// without scrape annotations, not refused.
func TestMetricsAnnotationEmpty(t *testing.T) {
	mut, err := mutateWith(t, simplePod(nil), map[string]string{MetricsAnnotation: ""}, DefaultSettings(), testMesh)
	if err != nil {
		t.Fatalf("namespace annotation %s: \"\": %v", MetricsAnnotation, err)
	}
	if v, ok := mut.Pod.Annotations[prometheusScrapeAnnotation]; ok {
		t.Errorf("%s=%q added for an empty %s", prometheusScrapeAnnotation, v, MetricsAnnotation)
	}
}

// TestPullPolicies: as FSM, the sidecar pulls IfNotPresent whatever its
// image (a :latest one would otherwise be pulled at every start), and
// fsm-init and fsm-healthcheck take --fsm-container-pull-policy, or the
// apiserver's default when it is empty.
func TestPullPolicies(t *testing.T) {
	pod := func() *corev1.Pod {
		p := simplePod(map[string]string{SidecarImageAnnotation: "registry.example.com/flomesh/pipy:latest"})
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
		return p
	}
	for _, policy := range []corev1.PullPolicy{"", corev1.PullNever, corev1.PullAlways} {
		t.Run(string(policy), func(t *testing.T) {
			m := testMesh
			m.ContainerPullPolicy = policy
			mut, err := mutateWith(t, pod(), nil, DefaultSettings(), m)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]corev1.PullPolicy{}
			for _, c := range append(mut.Pod.Spec.InitContainers, mut.Pod.Spec.Containers...) {
				seen[c.Name] = c.ImagePullPolicy
			}
			for name, want := range map[string]corev1.PullPolicy{SidecarContainerName: corev1.PullIfNotPresent, InitContainerName: policy, HealthcheckContainerName: policy} {
				if got, ok := seen[name]; !ok || got != want {
					t.Errorf("%s imagePullPolicy %q (present %v), want %q", name, got, ok, want)
				}
			}
		})
	}
}

// TestReinjectedCopyScraped: a copy of an injected pod (kubectl debug
// --copy-to drops its annotations) in a namespace with flomesh.io/metrics
// gets the scrape annotations back when it is re-identified, as FSM adds
// them before its already-injected check.
func TestReinjectedCopyScraped(t *testing.T) {
	metrics := map[string]string{MetricsAnnotation: "enabled"}
	src, err := mutateWith(t, simplePod(nil), metrics, DefaultSettings(), testMesh)
	if err != nil {
		t.Fatal(err)
	}
	cp := src.Pod.DeepCopy()
	cp.Annotations = nil
	mut, err := Mutate(MutateInput{Pod: cp, Namespace: monitoredNamespace("app", metrics), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: "u-2", Reinject: true})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{prometheusScrapeAnnotation: "true", prometheusPortAnnotation: fmt.Sprint(ProxyMetricsPort), prometheusPathAnnotation: MetricsPath} {
		if got := mut.Pod.Annotations[k]; got != want {
			t.Errorf("copy's %s = %q, want %q", k, got, want)
		}
	}
}

// TestMutateWindowsOnlyPods: a pod that only a Windows node may run is
// refused before any Secret, naming the field and value that send it there;
// one a Linux node may run is injected. By nodeSelector or node affinity
// alone (no spec.os) it was injected, stored and then failed on the node.
func TestMutateWindowsOnlyPods(t *testing.T) {
	const affinity = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
	os := func(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: corev1.LabelOSStable, Operator: op, Values: values}
	}
	zone := corev1.NodeSelectorRequirement{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}
	required := func(terms ...[]corev1.NodeSelectorRequirement) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			req := &corev1.NodeSelector{}
			for _, exprs := range terms {
				req.NodeSelectorTerms = append(req.NodeSelectorTerms, corev1.NodeSelectorTerm{MatchExpressions: exprs})
			}
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: req}}
		}
	}
	nodeSelector := func(v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: v, "pool": "x"} }
	}
	const linuxContainers = ": a pod for Windows nodes only cannot be meshed: the sidecar (Pipy) and fsm-init (iptables) are Linux containers, " +
		"which a Windows node cannot run; opt the pod out with annotation flomesh.io/sidecar-injection: disabled"
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		want string // "" when injected
	}{
		{"spec.os windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} },
			`spec.os.name "windows": a Windows pod cannot be meshed: the sidecar (Pipy) and fsm-init (iptables) are Linux containers, whose security settings ` +
				`(runAsUser, capabilities) the apiserver refuses in a Windows pod; opt the pod out with annotation flomesh.io/sidecar-injection: disabled`},
		{"nodeSelector windows", nodeSelector("windows"), `spec.nodeSelector["kubernetes.io/os"] "windows"` + linuxContainers},
		{"required affinity In [windows]", required([]corev1.NodeSelectorRequirement{zone, os(corev1.NodeSelectorOpIn, "windows")}),
			affinity + `.matchExpressions[1] "kubernetes.io/os In [windows]"` + linuxContainers},
		{"every affinity term windows", required([]corev1.NodeSelectorRequirement{os(corev1.NodeSelectorOpIn, "windows")},
			[]corev1.NodeSelectorRequirement{zone, os(corev1.NodeSelectorOpIn, "windows", "windows")}),
			affinity + `.matchExpressions[0] "kubernetes.io/os In [windows]"` + linuxContainers},

		{"no placement", func(*corev1.Pod) {}, ""},
		{"spec.os linux", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Linux} }, ""},
		{"nodeSelector linux", nodeSelector("linux"), ""},
		{"nodeSelector Windows (no node has it)", nodeSelector("Windows"), ""},
		{"beta label only", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"beta.kubernetes.io/os": "windows"} }, ""},
		{"affinity In [linux, windows]", required([]corev1.NodeSelectorRequirement{os(corev1.NodeSelectorOpIn, "linux", "windows")}), ""},
		{"affinity NotIn [linux] (also nodes without the label)", required([]corev1.NodeSelectorRequirement{os(corev1.NodeSelectorOpNotIn, "linux")}), ""},
		{"one affinity term may be linux", required([]corev1.NodeSelectorRequirement{os(corev1.NodeSelectorOpIn, "windows")},
			[]corev1.NodeSelectorRequirement{zone}), ""},
		{"affinity without terms", required(), ""},
		{"preferred affinity only", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
				{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{os(corev1.NodeSelectorOpIn, "windows")}}}}}}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			tc.edit(pod)
			m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && len(m.Pod.Spec.InitContainers) == 0:
				t.Fatal("not injected")
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestOriginalHealthProbesFirstContainer: with several containers probed
// the same way, bootstrap.yaml's OriginalHealthProbes records the first
// container's probe of the kind, the one FSM's controller configures the
// proxy's health port from (its first probe of each kind); FSM v1.5.1 keeps
// the last container's. Every container's probe is in ContainerHealthProbes.
func TestOriginalHealthProbesFirstContainer(t *testing.T) {
	probe := func(port int) *corev1.Probe {
		return &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(port)}}}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Image: "web", LivenessProbe: probe(8080)},
		{Name: "api", Image: "api", LivenessProbe: probe(9000)},
	}}}
	m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Bootstrap.OriginalHealthProbes[probeLiveness].Port; got != 8080 {
		t.Errorf("OriginalHealthProbes liveness port %d, want 8080 (the first container's)", got)
	}
	if got := m.Bootstrap.ContainerHealthProbes["api"][probeLiveness].Port; got != 9000 {
		t.Errorf("ContainerHealthProbes[api] liveness port %d, want 9000", got)
	}
}
