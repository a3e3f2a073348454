package injector

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestProbeWithoutPort: an HTTP probe that gives no port (port 0, what
// `httpGet: {path: /healthz}` decodes to). The apiserver refuses such a pod
// unmeshed, but FSM v1.5.1 injects it in a meshed namespace
// (pkg/injector/health_probes.go: getPort finds no port "0", the original
// port is 0, and the rewritten probe's port is a health port, which the
// apiserver then stores); the headers say 80 for HTTP and 443 for HTTPS, and
// the probe works against an app on that port. So such a workload ran under
// FSM, and must still be admitted, with a warning. A TCP probe without a
// port stays refused: FSM's healthcheck container dialled port 0 and the
// probe never passed. (From a review against FSM's source.)
func TestProbeWithoutPort(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler corev1.ProbeHandler
		refused string // the denial's message, else admitted
		port    int32  // the probe's port after the rewrite
		header  string // the header carrying the original port
		value   string
	}{
		{name: "HTTP", handler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}},
			port: LivenessProbePort, header: originalHTTPPortHeader, value: "80"},
		{name: "HTTPS", handler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Scheme: corev1.URISchemeHTTPS}},
			port: HealthcheckPort, header: originalTCPPortHeader, value: "443"},
		{name: "TCP", handler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}},
			refused: `container "app" liveness probe: port 0 out of range 1-65535`},
		{name: "HTTP port negative", handler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(-1)}},
			refused: `container "app" liveness probe: port -1 out of range 1-65535`},
		{name: "HTTP port out of range", handler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(70000)}},
			refused: `container "app" liveness probe: port 70000 out of range 1-65535`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: tc.handler}
			f := newHandlerFixture(t, stubIssuer{}, nil)
			_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				r.Object.Raw, _ = json.Marshal(pod)
			}), "application/json")
			if tc.refused != "" {
				if resp.Allowed || resp.Result == nil || resp.Result.Message != tc.refused {
					t.Fatalf("allowed %v, result %+v; want refused with %q", resp.Allowed, resp.Result, tc.refused)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("refused: %+v; FSM v1.5.1 injects this pod", resp.Result)
			}
			if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], `container "app" spec.containers[0].livenessProbe.httpGet.port: unset, so probed on port `+tc.value+";") {
				t.Errorf("warnings %q, want one naming the probe", resp.Warnings)
			}
			raw, _ := json.Marshal(pod)
			patch, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out, err := patch.Apply(raw)
			if err != nil {
				t.Fatal(err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var app *corev1.Container
			for i := range got.Spec.Containers {
				if got.Spec.Containers[i].Name == "app" {
					app = &got.Spec.Containers[i]
				}
			}
			hg := app.LivenessProbe.HTTPGet
			if hg == nil {
				t.Fatalf("probe %+v, want an HTTP probe", app.LivenessProbe)
			}
			headers := map[string]string{}
			for _, h := range hg.HTTPHeaders {
				headers[h.Name] = h.Value
			}
			if hg.Port.IntValue() != int(tc.port) || headers[tc.header] != tc.value {
				t.Errorf("probe port %s, headers %v; want port %d and %s: %s, as FSM writes", hg.Port.String(), headers, tc.port, tc.header, tc.value)
			}
		})
	}
}

// TestProbeSchemeNotSupported: an HTTP probe whose scheme is neither HTTP
// nor HTTPS ("https", as often written). The apiserver refuses such a pod
// unmeshed (httpGet.scheme: Unsupported value), but stores it injected: the
// rewritten probe's scheme is HTTP. FSM v1.5.1 rewrites it as HTTP too, so
// it is admitted as FSM admitted it, but with a warning naming the field
// and the value: otherwise an HTTPS app's probe fails for ever with nothing
// telling why.
func TestProbeSchemeNotSupported(t *testing.T) {
	s, err := DefaultSettings().Checked()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scheme corev1.URIScheme
		warn   string // the warning's text, else none
	}{
		{scheme: "https", warn: `container "app" spec.containers[0].livenessProbe.httpGet.scheme: "https" is not HTTP or HTTPS, so probed as HTTP; fix it [docs: probe-scheme]`},
		{scheme: "Http", warn: `container "app" spec.containers[0].livenessProbe.httpGet.scheme: "Http" is not HTTP or HTTPS, so probed as HTTP; fix it [docs: probe-scheme]`},
		{scheme: corev1.URISchemeHTTP},
		{scheme: corev1.URISchemeHTTPS},
		{scheme: ""}, // not defaulted yet (the apiserver defaults it to HTTP before the webhooks)
	} {
		t.Run(string(tc.scheme), func(t *testing.T) {
			pod := simplePod(nil)
			pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8443), Scheme: tc.scheme}}}
			mut, err := mutateWith(t, pod, nil, s, testMesh)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var want []string
			if tc.warn != "" {
				want = []string{tc.warn}
			}
			if !slices.Equal(mut.Warnings, want) {
				t.Errorf("warnings %q, want %q", mut.Warnings, want)
			}
		})
	}
}

// TestProbeWithoutPortToHealthcheck: an HTTP probe without a port whose
// kind's first probe in the pod is not HTTP is sent to the healthcheck
// container (nothing listens on the sidecar's health port for it), which
// dials port 80, where FSM v1.5.1 sends it, not port 0.
func TestProbeWithoutPortToHealthcheck(t *testing.T) {
	first := &corev1.Container{Name: "first", LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}
	app := &corev1.Container{Name: "app", LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}}}
	if _, err := rewriteProbes([]*corev1.Container{first, app}); err != nil {
		t.Fatal(err)
	}
	hg := app.LivenessProbe.HTTPGet
	if hg == nil || hg.Port.IntValue() != int(HealthcheckPort) || len(hg.HTTPHeaders) != 1 ||
		hg.HTTPHeaders[0] != (corev1.HTTPHeader{Name: originalTCPPortHeader, Value: "80"}) {
		t.Fatalf("probe %+v, want the healthcheck port with %s: 80", app.LivenessProbe, originalTCPPortHeader)
	}
}
