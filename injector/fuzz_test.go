package injector

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// FuzzInjectPod sends arbitrary pod objects (seeded with the golden inputs,
// whose annotations cover every parser) through the served handler, both as
// fuzzed and as the apiserver would send them (marshalled from the Go types,
// so every structural parent such as metadata and spec is present). Every
// answer must be a review for the request's uid; nothing may end in a 500
// (the served wrapper turns a panic into one); a refusal writes no Secret; an
// injection of an apiserver-shaped pod carries a patch that applies to it and
// yields an injected pod with exactly its one Secret written.
func FuzzInjectPod(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.in.yaml"))
	if err != nil || len(inputs) == 0 {
		f.Fatalf("no golden inputs to seed from (%v)", err)
	}
	for _, in := range inputs {
		y, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		var c goldenCase
		if err := yaml.Unmarshal(y, &c); err != nil {
			f.Fatalf("%s: %v", in, err)
		}
		raw, err := json.Marshal(c.Pod)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"metadata":{"annotations":{"flomesh.io/outbound-port-exclusion-list":"1,2,65536","flomesh.io/sidecar-injection":"yes"}},"spec":{"containers":[]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"flomesh.io/sidecar-resource-limits-cpu":"1e400"}},"spec":{"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":"http"}}}]}}`))
	f.Add([]byte(`{}`))

	f.Fuzz(func(t *testing.T, pod []byte) {
		if !json.Valid(pod) {
			// Not embeddable in a review; FuzzUnmarshal (reviewhttp) covers
			// bodies that are not JSON.
			return
		}
		admitOnce(t, pod, false)
		var typed corev1.Pod
		if json.Unmarshal(pod, &typed) != nil {
			return
		}
		shaped, err := json.Marshal(&typed)
		if err != nil {
			t.Fatal(err)
		}
		admitOnce(t, shaped, true)
	})
}

func admitOnce(t *testing.T, pod []byte, checkPatch bool) {
	t.Helper()
	fx := newHandlerFixture(t, stubIssuer{}, nil)
	body := reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = pod })
	if _, _, err := reviewhttp.Unmarshal(body); err != nil {
		// Refused before the handler (duplicate names, invalid UTF-8), as
		// the apiserver's own decoder would; FuzzUnmarshal covers that.
		return
	}
	_, resp := fx.post(t, body, "application/json")
	if resp.UID != "uid-1" {
		t.Fatalf("uid %q not echoed for %s", resp.UID, pod)
	}
	if resp.Result != nil && resp.Result.Code == http.StatusInternalServerError {
		t.Fatalf("500 for %s: %s", pod, resp.Result.Message)
	}
	if !resp.Allowed {
		if resp.Result == nil || strings.TrimSpace(resp.Result.Message) == "" {
			t.Fatalf("refused without a reason: %s", pod)
		}
		if len(fx.secrets) != 0 {
			t.Fatalf("refused pod left %d Secrets behind: %s", len(fx.secrets), pod)
		}
		return
	}
	if len(resp.Patch) == 0 {
		if len(fx.secrets) != 0 {
			t.Fatalf("pod admitted unchanged but %d Secrets written: %s", len(fx.secrets), pod)
		}
		return
	}
	if !checkPatch {
		return
	}
	patch, err := jsonpatchapply.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
	}
	out, err := patch.Apply(pod)
	if err != nil {
		t.Fatalf("patch does not apply to the pod as sent: %v\npod %s\npatch %s", err, pod, resp.Patch)
	}
	var injected corev1.Pod
	if err := json.Unmarshal(out, &injected); err != nil {
		t.Fatalf("patched pod does not decode: %v\n%s", err, out)
	}
	id := injected.Labels[ProxyUUIDLabel]
	if id == "" {
		t.Fatalf("patched pod has no %s label: %s", ProxyUUIDLabel, out)
	}
	if len(fx.secrets) != 1 || fx.secrets[0].Name != BootstrapSecretName(id) {
		t.Fatalf("injected pod %s: want exactly Secret %s, got %d", id, BootstrapSecretName(id), len(fx.secrets))
	}
}
