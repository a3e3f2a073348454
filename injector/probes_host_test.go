package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// mutateLiveness injects a pod whose container "app" (port "http" 8080) has
// the liveness probe handler h, and returns the rewritten probe's HTTP
// action, its headers by name and the bootstrap's original liveness probe.
func mutateLiveness(t *testing.T, h corev1.ProbeHandler) (*corev1.HTTPGetAction, map[string]string, HealthProbe) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:          "app",
			Image:         "app",
			Ports:         []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			LivenessProbe: &corev1.Probe{ProbeHandler: h},
		}}},
	}
	mut, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: "u-1"})
	if err != nil {
		t.Fatalf("refused: %v; FSM v1.5.1 injects this pod", err)
	}
	for _, c := range mut.Pod.Spec.Containers {
		if c.Name != "app" {
			continue
		}
		if c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.TCPSocket != nil {
			t.Fatalf("probe %+v, want an HTTP probe", c.LivenessProbe)
		}
		headers := map[string]string{}
		for _, h := range c.LivenessProbe.HTTPGet.HTTPHeaders {
			headers[h.Name] = h.Value
		}
		return c.LivenessProbe.HTTPGet, headers, mut.Bootstrap.OriginalHealthProbes[probeLiveness]
	}
	t.Fatal("container app missing from the injected pod")
	return nil, nil, HealthProbe{}
}

// TestRewrittenProbeHost: an HTTP probe sent to the proxy keeps its host, and
// the user's own headers, as FSM v1.5.1 keeps them (health_probes.go
// rewriteProbe edits the probe's httpGet in place). A probe sent to the
// healthcheck container, a TCP check of the pod's own port, gets none: the
// kubelet must reach fsm-healthcheck in this pod, whatever host the app's
// check named. FSM keeps an HTTPS probe's host too, sending the kubelet to
// <host>:15901, which answers only where that host is this pod, where ours
// reaches it as well.
func TestRewrittenProbeHost(t *testing.T) {
	userHeader := corev1.HTTPHeader{Name: "X-Probe", Value: "1"}
	for _, tc := range []struct {
		name     string
		handler  corev1.ProbeHandler
		wantHost string
		wantPort int32
	}{
		{"HTTP to the proxy", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "app.example", Path: "/healthz", Port: intstr.FromInt32(8080), HTTPHeaders: []corev1.HTTPHeader{userHeader}}},
			"app.example", LivenessProbePort},
		{"HTTPS to fsm-healthcheck", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "app.example", Path: "/healthz", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS, HTTPHeaders: []corev1.HTTPHeader{userHeader}}},
			"", HealthcheckPort},
		{"TCP to fsm-healthcheck", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "app.example", Port: intstr.FromInt32(5432)}},
			"", HealthcheckPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hg, headers, _ := mutateLiveness(t, tc.handler)
			if hg.Host != tc.wantHost || hg.Port.IntValue() != int(tc.wantPort) {
				t.Errorf("rewritten probe host %q port %s, want host %q port %d", hg.Host, hg.Port.String(), tc.wantHost, tc.wantPort)
			}
			_, kept := headers[userHeader.Name]
			if want := tc.wantHost != ""; kept != want {
				t.Errorf("headers %v: user's header %s kept %v, want %v", headers, userHeader.Name, kept, want)
			}
		})
	}
}

// TestProbePortAsNumericString: a probe port written as a string of digits
// ("8080", which YAML gives as `port: "8080"`). The apiserver refuses it
// unmeshed (a string port must be a port name), but stores the rewritten
// probe, whose port is a number; FSM v1.5.1 reads the digits as the port
// (getPort: IntOrString.IntValue), so a workload FSM ran probes 8080, not
// the 80 of a port name its container does not declare.
func TestProbePortAsNumericString(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler corev1.ProbeHandler
		header  string
	}{
		{"HTTP", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("8080")}}, originalHTTPPortHeader},
		{"HTTPS", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("8080"), Scheme: corev1.URISchemeHTTPS}}, originalTCPPortHeader},
		{"TCP", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("8080")}}, originalTCPPortHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, headers, orig := mutateLiveness(t, tc.handler)
			if headers[tc.header] != "8080" || orig.Port != 8080 {
				t.Errorf("headers %v, bootstrap's original port %d; want %s: 8080 and port 8080, as FSM reads the digits", headers, orig.Port, tc.header)
			}
		})
	}
}
