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
	const warn = `container %q runs as uid 1500 (%s), the user the sidecar container runs as: fsm-init's iptables rules exempt that uid's outbound connections from the proxy, ` +
		`so %q's connections bypass the mesh (no mTLS, no egress or access policy; a meshed peer refuses them); run it as another user`
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
			fmt.Sprintf(warn, "app", "spec.securityContext.runAsUser", "app"),
			fmt.Sprintf(warn, "db", "spec.securityContext.runAsUser", "db"),
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
	const collide = `container "app" declares port %d/%s (spec.containers[0].ports[%d].containerPort), %s: the containers share the pod's network, ` +
		`so whichever starts second cannot listen on it and the app or the proxy fails; use another port`
	const bypass = `container "app" declares port %d/TCP (spec.containers[0].ports[0].containerPort), a health probe port that fsm-init leaves out of inbound interception: ` +
		`connections to it reach "app" past the proxy (no mTLS, no access policy); use another port`
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
			want: []string{fmt.Sprintf(collide, 15001, "TCP", 1, "the sidecar's outbound listener")}},
		{name: "inbound, stats and metrics listeners", ports: []corev1.ContainerPort{{ContainerPort: 15003}, {ContainerPort: 15000}, {ContainerPort: 15010}},
			want: []string{
				fmt.Sprintf(collide, 15003, "TCP", 0, "the sidecar's inbound listener"),
				fmt.Sprintf(collide, 15000, "TCP", 1, "the sidecar's stats listener"),
				fmt.Sprintf(collide, 15010, "TCP", 2, "the sidecar's metrics listener"),
			}},
		{name: "Pipy's admin port is the repo server port (pprof's 6060)", ports: []corev1.ContainerPort{{ContainerPort: 6060}},
			want: []string{fmt.Sprintf(collide, 6060, "TCP", 0, "the sidecar's Pipy admin port (--admin-port, MeshConfig spec.repoServer.port)")}},
		{name: "Pipy's admin port follows the MeshConfig", ports: []corev1.ContainerPort{{ContainerPort: 6060}, {ContainerPort: 7070}},
			set:  func(s *Settings) { s.RepoServerPort = 7070 },
			want: []string{fmt.Sprintf(collide, 7070, "TCP", 1, "the sidecar's Pipy admin port (--admin-port, MeshConfig spec.repoServer.port)")}},
		{name: "liveness listener when an HTTP liveness probe is rewritten", ports: []corev1.ContainerPort{{ContainerPort: 15901}}, liveness: httpProbe,
			want: []string{fmt.Sprintf(collide, 15901, "TCP", 0, "the sidecar's liveness probe listener")}},
		{name: "a health port nothing listens on bypasses inbound interception", ports: []corev1.ContainerPort{{ContainerPort: 15902}}, liveness: httpProbe,
			want: []string{fmt.Sprintf(bypass, 15902)}},
		{name: "fsm-healthcheck's port when it is added", ports: []corev1.ContainerPort{{ContainerPort: 15904}}, liveness: tcpProbe,
			want: []string{fmt.Sprintf(collide, 15904, "TCP", 0, "the fsm-healthcheck container's listener")}},
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
	const metrics = `annotation prometheus.io/path "/metrics" by "/stats/prometheus", annotation prometheus.io/port "8080" by "15010" replaced: ` +
		`the namespace's annotation flomesh.io/metrics enables scraping the sidecar's metrics through the pod's scrape annotations, so the app's own metrics they pointed at are no longer scraped; ` +
		`expose them through another scrape configuration`
	// A pod that opted out of scraping is scraped from now on: it had no
	// metrics of its own pointed at, and nothing to expose elsewhere.
	const optedOut = `annotation prometheus.io/scrape "false" by "true" replaced: ` +
		`the namespace's annotation flomesh.io/metrics enables scraping the sidecar's metrics through the pod's scrape annotations, so the pod, which opted out of scraping, is scraped; ` +
		`to keep it unscraped, opt it out with annotation flomesh.io/sidecar-injection: disabled or remove flomesh.io/metrics from the namespace`
	const dns = `spec.dnsPolicy "Default" and spec.dnsConfig replaced: MeshConfig spec.sidecar.localDNSProxy.enable makes Service fsm-controller's ClusterIP the pod's only nameserver ` +
		`(dnsPolicy None and the mesh's searches and ndots); opt the pod out with annotation flomesh.io/sidecar-injection: disabled to keep its own DNS settings`
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
			want:  []string{strings.Replace(optedOut, `annotation prometheus.io/scrape`, `annotation prometheus.io/port "8080" by "15010", annotation prometheus.io/scrape`, 1)}},
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
