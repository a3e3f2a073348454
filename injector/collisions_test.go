package injector

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// TestAppRunsAsProxyUID: fsm-init's rules exempt the proxy's uid (1500) from
// outbound interception, so an app container running as it (its own
// runAsUser, else the pod's) bypasses the mesh. FSM v1.5.1 injects such a
// pod silently; it is injected the same way, with a warning naming the
// container and the field. Only containers that run under the rules: not an
// app init container that runs before fsm-init (FSM's mode).
func TestAppRunsAsProxyUID(t *testing.T) {
	const warn = `%[2]s 1500 is the proxy's uid: traffic of container %[1]q bypasses the mesh; use another uid [docs: proxy-uid]`
	as := func(uid int64) *corev1.SecurityContext { return &corev1.SecurityContext{RunAsUser: ptr.To(uid)} }
	shipper := corev1.Container{Name: "shipper", Image: "s", SecurityContext: as(1500), RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		want []string
	}{
		{name: "container runAsUser 1500", edit: func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext = as(1500) },
			want: []string{fmt.Sprintf(warn, "app", "spec.containers[0].securityContext.runAsUser", "app")}},
		{name: "pod runAsUser 1500 reaches every container not setting its own", edit: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(1500))}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "own", Image: "own", SecurityContext: as(1000)}, corev1.Container{Name: "db", Image: "db"})
		}, want: []string{
			`spec.securityContext.runAsUser 1500 is the proxy's uid: traffic of containers "app", "db" bypasses the mesh; use another uid [docs: proxy-uid]`,
		}},
		{name: "an app native sidecar runs under the rules", edit: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{shipper}
		}, want: append(appNativeSidecarWarnings([]corev1.Container{shipper}), fmt.Sprintf(warn, "shipper", "spec.initContainers[0].securityContext.runAsUser", "shipper"))},
		{name: "an init container before fsm-init has no rules", edit: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m", SecurityContext: as(1500)}}
		}},
		{name: "native mode: init containers run under the rules", edit: func(p *corev1.Pod) {
			p.Annotations = map[string]string{SidecarNativeAnnotation: "true"}
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m", SecurityContext: as(1500)}}
		}, want: []string{fmt.Sprintf(warn, "migrate", "spec.initContainers[0].securityContext.runAsUser", "migrate")}},
		{name: "the container's own uid beats the pod's", edit: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(1500))}
			p.Spec.Containers[0].SecurityContext = as(1501)
		}},
		{name: "group 1500 is not matched by the rules", edit: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsGroup: ptr.To(int64(1500)), FSGroup: ptr.To(int64(1500))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			tc.edit(pod)
			m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Warnings, tc.want) {
				t.Fatalf("warnings %q\nwant %q", m.Warnings, tc.want)
			}
		})
	}
}

// TestAppPortCollidesWithInjected: an app container declaring a port an
// injected container listens on (the pod's containers share one network)
// or a health port fsm-init leaves out of inbound interception is injected
// as FSM injects it, with a warning naming the container, the field, the
// port and what it collides with.
func TestAppPortCollidesWithInjected(t *testing.T) {
	const collide = `container "app" spec.containers[0].ports: the injected containers listen on %s; use other ports [docs: port-collision]`
	const bypass = `container "app" spec.containers[0].ports: fsm-init does not intercept health port %d/TCP; use other ports [docs: health-port]`
	httpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intOrStr("8080")}}}
	tcpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrStr("8080")}}}
	for _, tc := range []struct {
		name     string
		ports    []corev1.ContainerPort
		liveness *corev1.Probe
		set      func(*Settings)
		want     []string
	}{
		{name: "outbound listener", ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 15001}},
			want: []string{fmt.Sprintf(collide, "15001/TCP")}},
		{name: "inbound, stats and metrics listeners", ports: []corev1.ContainerPort{{ContainerPort: 15003}, {ContainerPort: 15000}, {ContainerPort: 15010}},
			want: []string{fmt.Sprintf(collide, "15003/TCP, 15000/TCP, 15010/TCP")}},
		{name: "Pipy's admin port is the repo server port (pprof's 6060)", ports: []corev1.ContainerPort{{ContainerPort: 6060}},
			want: []string{fmt.Sprintf(collide, "6060/TCP")}},
		{name: "Pipy's admin port follows the MeshConfig", ports: []corev1.ContainerPort{{ContainerPort: 6060}, {ContainerPort: 7070}},
			set:  func(s *Settings) { s.RepoServerPort = 7070 },
			want: []string{fmt.Sprintf(collide, "7070/TCP")}},
		{name: "liveness listener when an HTTP liveness probe is rewritten", ports: []corev1.ContainerPort{{ContainerPort: 15901}}, liveness: httpProbe,
			want: []string{fmt.Sprintf(collide, "15901/TCP")}},
		{name: "a health port nothing listens on bypasses inbound interception", ports: []corev1.ContainerPort{{ContainerPort: 15902}}, liveness: httpProbe,
			want: []string{fmt.Sprintf(bypass, 15902)}},
		{name: "fsm-healthcheck's port when it is added", ports: []corev1.ContainerPort{{ContainerPort: 15904}}, liveness: tcpProbe,
			want: []string{fmt.Sprintf(collide, "15904/TCP")}},
		{name: "a listener's port and a bypassed health port: one warning each", ports: []corev1.ContainerPort{{ContainerPort: 15001}, {ContainerPort: 15902}, {ContainerPort: 15000}}, liveness: httpProbe,
			want: []string{fmt.Sprintf(collide, "15001/TCP, 15000/TCP"), fmt.Sprintf(bypass, 15902)}},
		{name: "fsm-healthcheck's port when it is not added", ports: []corev1.ContainerPort{{ContainerPort: 15904}},
			want: []string{fmt.Sprintf(bypass, 15904)}},
		{name: "UDP on a TCP listener's port", ports: []corev1.ContainerPort{{ContainerPort: 15001, Protocol: corev1.ProtocolUDP}}},
		{name: "a hostPort maps onto a free containerPort", ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 15001}}},
		{name: "ordinary ports", ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 8080}, {ContainerPort: 15002}, {ContainerPort: 9090}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			pod.Spec.Containers[0].Ports = tc.ports
			pod.Spec.Containers[0].LivenessProbe = tc.liveness
			s := DefaultSettings()
			if tc.set != nil {
				tc.set(&s)
			}
			m, err := mutateWith(t, pod, nil, s, testMesh)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Warnings, tc.want) {
				t.Fatalf("warnings %q\nwant %q", m.Warnings, tc.want)
			}
		})
	}
}

// TestInjectedSettingsReplaceTheApps: the namespace's flomesh.io/metrics
// replaces the pod's own scrape annotations, and the local DNS proxy the
// pod's own DNS settings, as FSM v1.5.1 replaces them: injected the same
// way, with a warning naming what was replaced.
func TestInjectedSettingsReplaceTheApps(t *testing.T) {
	const metrics = `namespace annotation flomesh.io/metrics replaced prometheus.io/path "/metrics", prometheus.io/port "8080": ` +
		`the app's own metrics are no longer scraped [docs: scrape-annotations]`
	// A pod that opted out of scraping is scraped from now on: it had no
	// metrics of its own pointed at, and nothing to expose elsewhere.
	const optedOut = `namespace annotation flomesh.io/metrics replaced prometheus.io/scrape "false": ` +
		`the pod is scraped; to keep it unscraped annotate flomesh.io/sidecar-injection: disabled [docs: scrape-annotations]`
	const dns = `spec.dnsPolicy "Default", spec.dnsConfig replaced by MeshConfig localDNSProxy (fsm-controller only); ` +
		`to keep them, annotate flomesh.io/sidecar-injection: disabled [docs: local-dns]`
	scrape := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
	for _, tc := range []struct {
		name     string
		ann      map[string]string
		nsAnn    map[string]string
		localDNS bool
		edit     func(*corev1.Pod)
		want     []string
	}{
		{name: "app's scrape annotations, metrics enabled", ann: scrape, nsAnn: map[string]string{MetricsAnnotation: "enabled"}, want: []string{metrics}},
		{name: "app's scrape annotations, metrics not enabled", ann: scrape},
		{name: "pod opted out of scraping, metrics enabled", ann: map[string]string{"prometheus.io/scrape": "false"}, nsAnn: map[string]string{MetricsAnnotation: "enabled"}, want: []string{optedOut}},
		{name: "pod opted out of scraping with its own port, metrics enabled", ann: map[string]string{"prometheus.io/scrape": "false", "prometheus.io/port": "8080"},
			nsAnn: map[string]string{MetricsAnnotation: "enabled"},
			want:  []string{strings.Replace(optedOut, `prometheus.io/scrape`, `prometheus.io/port "8080", prometheus.io/scrape`, 1)}},
		{name: "already the sidecar's", ann: map[string]string{"prometheus.io/port": "15010"}, nsAnn: map[string]string{MetricsAnnotation: "enabled"}},
		{name: "own DNS settings, local DNS proxy", localDNS: true, edit: func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSDefault
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Searches: []string{"corp.example"}}
		}, want: []string{dns}},
		{name: "ClusterFirst, local DNS proxy", localDNS: true, edit: func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSClusterFirst }},
		{name: "own DNS settings, no local DNS proxy", edit: func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(tc.ann)
			if tc.edit != nil {
				tc.edit(pod)
			}
			s := DefaultSettings()
			s.LocalDNSProxy = tc.localDNS
			m, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", tc.nsAnn), Settings: s, Mesh: testMesh, ProxyUUID: "u-1",
				ControllerService: testControllerService()})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Warnings, tc.want) {
				t.Fatalf("warnings %q\nwant %q", m.Warnings, tc.want)
			}
		})
	}
}
