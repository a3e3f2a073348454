package injector

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// pipyProbeListeners is what the sidecar listens on for probes, given the
// stored pod: FSM v1.5.1's controller copies every regular container's
// probes, in container order, into the sidecar's config
// (pkg/sidecar/v1/providers/pipy/repo/inform.go recordPodMetadata,
// jobs.go probes), and the codebase listens on 15901/15902/15903 only when
// the FIRST probe of that kind has httpGet.port equal to it
// (repo/codebase/main.js:33-46).
func pipyProbeListeners(pod *corev1.Pod) map[int32]bool {
	first := map[string]*corev1.Probe{}
	for _, c := range pod.Spec.Containers {
		for kind, p := range map[string]*corev1.Probe{probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe, probeStartup: c.StartupProbe} {
			if p != nil && first[kind] == nil {
				first[kind] = p
			}
		}
	}
	out := map[int32]bool{}
	for kind, port := range map[string]int32{probeLiveness: LivenessProbePort, probeReadiness: ReadinessProbePort, probeStartup: StartupProbePort} {
		if p := first[kind]; p != nil && p.HTTPGet != nil && p.HTTPGet.Port.Type == intstr.Int && p.HTTPGet.Port.IntVal == port {
			out[port] = true
		}
	}
	return out
}

// TestRewrittenProbeHasListener: every probe the injector sends to a
// sidecar health port (15901-15903) finds the sidecar listening there; else
// the kubelet's probe is refused and the container restarted (liveness) or
// never Ready. When the first probe of a kind is one the proxy does not
// serve (exec, gRPC, HTTPS, TCP), FSM still sent the other containers' HTTP
// probes of that kind there; they now get a TCP check of their own port
// through the healthcheck container. (Found by a review against FSM's
// controller and its Pipy codebase.)
func TestRewrittenProbeHasListener(t *testing.T) {
	httpProbe := func(port int) *corev1.Probe {
		return &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(port)}}}
	}
	httpsProbe := &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(8443), Scheme: corev1.URISchemeHTTPS}}}
	execProbe := &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	grpcProbe := &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}
	for _, tc := range []struct {
		name       string
		containers []corev1.Container
		// wantTCP: "container/kind" of the HTTP probes sent to the
		// healthcheck container.
		wantTCP []string
	}{
		{name: "exec liveness first", containers: []corev1.Container{
			{Name: "db-agent", Image: "agent", LivenessProbe: execProbe},
			{Name: "web", Image: "web", LivenessProbe: httpProbe(8080), ReadinessProbe: httpProbe(8080)},
		}, wantTCP: []string{"web/liveness"}},
		{name: "gRPC readiness first", containers: []corev1.Container{
			{Name: "grpc", Image: "grpc", ReadinessProbe: grpcProbe},
			{Name: "web", Image: "web", ReadinessProbe: httpProbe(8080)},
		}, wantTCP: []string{"web/readiness"}},
		{name: "HTTPS startup first", containers: []corev1.Container{
			{Name: "tls", Image: "tls", StartupProbe: httpsProbe},
			{Name: "web", Image: "web", StartupProbe: httpProbe(8080)},
		}, wantTCP: []string{"web/startup"}},
		{name: "HTTP first: every HTTP probe of the kind on the proxy, as FSM", containers: []corev1.Container{
			{Name: "web", Image: "web", LivenessProbe: httpProbe(8080)},
			{Name: "exec", Image: "exec", LivenessProbe: execProbe},
			{Name: "api", Image: "api", LivenessProbe: httpProbe(9000)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"}, Spec: corev1.PodSpec{Containers: tc.containers}}
			m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			listening := pipyProbeListeners(m.Pod)
			var tcp []string
			for _, c := range m.Pod.Spec.Containers {
				for kind, p := range map[string]*corev1.Probe{probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe, probeStartup: c.StartupProbe} {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != HealthcheckPath {
						continue
					}
					port := p.HTTPGet.Port.IntVal
					if port == HealthcheckPort {
						if orig := tc.containers[slices.IndexFunc(tc.containers, func(o corev1.Container) bool { return o.Name == c.Name })]; probeOf(&orig, kind).HTTPGet != nil &&
							probeOf(&orig, kind).HTTPGet.Scheme != corev1.URISchemeHTTPS {
							tcp = append(tcp, c.Name+"/"+kind)
						}
						continue
					}
					if !listening[port] {
						t.Errorf("container %q %s probe is rewritten to sidecar port %d, where the sidecar never listens for this pod (its first %s probe is not on %d): the kubelet's probe is refused", c.Name, kind, port, kind, port)
					}
				}
			}
			if !slices.Equal(tcp, tc.wantTCP) {
				t.Errorf("HTTP probes sent to the healthcheck container %q, want %q", tcp, tc.wantTCP)
			}
			hasHealthcheck := slices.ContainsFunc(m.Pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == HealthcheckContainerName })
			if len(tc.wantTCP) > 0 && !hasHealthcheck {
				t.Errorf("no %s container to answer them", HealthcheckContainerName)
			}
		})
	}
}

func probeOf(c *corev1.Container, kind string) *corev1.Probe {
	switch kind {
	case probeLiveness:
		return c.LivenessProbe
	case probeReadiness:
		return c.ReadinessProbe
	}
	return c.StartupProbe
}
