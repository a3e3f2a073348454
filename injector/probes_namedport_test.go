package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestProbeOnUndeclaredNamedPort: a probe naming a port its container does not
// declare. The apiserver stores such a pod, and FSM v1.5.1 injects it
// (pkg/injector/health_probes.go rewriteProbe: getPort's error is logged, the
// port taken as 0; the headers say 80 for HTTP, 443 for HTTPS, 0 for TCP).
// So must we: refusing it failed every pod create of a workload FSM ran.
// (From a review against FSM's source.)
func TestProbeOnUndeclaredNamedPort(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler corev1.ProbeHandler
		port    int32  // the probe's port after the rewrite
		header  string // the header carrying the original port
		value   string
		http    bool
	}{
		{"HTTP", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("healthz")}},
			LivenessProbePort, originalHTTPPortHeader, "80", true},
		{"HTTPS", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("healthz"), Scheme: corev1.URISchemeHTTPS}},
			HealthcheckPort, originalTCPPortHeader, "443", false},
		{"TCP", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("healthz")}},
			HealthcheckPort, originalTCPPortHeader, "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:          "app",
					Image:         "app",
					Ports:         []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					LivenessProbe: &corev1.Probe{ProbeHandler: tc.handler},
				}}},
			}
			mut, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: "u-1"})
			if err != nil {
				t.Fatalf("refused: %v; FSM v1.5.1 injects this pod", err)
			}
			var app *corev1.Container
			for i := range mut.Pod.Spec.Containers {
				if mut.Pod.Spec.Containers[i].Name == "app" {
					app = &mut.Pod.Spec.Containers[i]
				}
			}
			hg := app.LivenessProbe.HTTPGet
			if hg == nil || app.LivenessProbe.TCPSocket != nil {
				t.Fatalf("probe %+v, want an HTTP probe to the proxy", app.LivenessProbe)
			}
			got := map[string]string{}
			for _, h := range hg.HTTPHeaders {
				got[h.Name] = h.Value
			}
			if hg.Port.IntValue() != int(tc.port) || got[tc.header] != tc.value {
				t.Errorf("probe port %s, headers %v; want port %d and %s: %s, as FSM writes", hg.Port.String(), got, tc.port, tc.header, tc.value)
			}
			if tc.http && got[originalHTTPPathHeader] != "/healthz" {
				t.Errorf("headers %v, want %s: /healthz", got, originalHTTPPathHeader)
			}
			if orig, ok := mut.Bootstrap.OriginalHealthProbes[probeLiveness]; !ok || orig.Port != 0 {
				t.Errorf("bootstrap's original liveness probe %+v (recorded: %v), want port 0, as FSM records it", orig, ok)
			}
		})
	}
}
