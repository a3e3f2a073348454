package injector

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
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

// FuzzInjectVirtualMachine sends arbitrary objects as VirtualMachine creates
// in a monitored namespace through the served handler. Every answer is a
// review for the request's uid, never a 500 (the served wrapper turns a
// panic into one), and writes no Secret; a refusal gives a reason; a patch
// applies to the object as sent, sets fsm-proxy-uuid to the admission's uuid
// and changes nothing else.
func FuzzInjectVirtualMachine(f *testing.F) {
	f.Add(vmJSON(nil))
	f.Add(vmJSON(map[string]any{"labels": map[string]any{ProxyUUIDLabel: "old", "a/b~c": ""}}))
	f.Add(vmJSON(map[string]any{"labels": nil, "annotations": map[string]any{SidecarInjectionAnnotation: "disabled"}}))
	f.Add(vmJSON(map[string]any{"annotations": map[string]any{SidecarInjectionAnnotation: "on"}}))
	f.Add([]byte(`{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine"}`))
	f.Add([]byte(`{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine","metadata":null}`))
	f.Add([]byte(`{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine","metadata":{"labels":[]}}`))
	f.Add([]byte(`{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine","Metadata":{"labels":{}}}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, vm []byte) {
		if !json.Valid(vm) {
			return // not embeddable in a review (FuzzUnmarshal covers those bodies)
		}
		fx := newHandlerFixture(t, stubIssuer{}, nil)
		body := reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			r.Kind = VirtualMachineGVK
			r.Object.Raw = vm
		})
		if _, _, err := reviewhttp.Unmarshal(body); err != nil {
			return // refused before the handler, as by the apiserver's decoder
		}
		_, resp := fx.post(t, body, "application/json")
		if resp.UID != "uid-1" {
			t.Fatalf("uid %q not echoed for %s", resp.UID, vm)
		}
		if resp.Result != nil && resp.Result.Code == http.StatusInternalServerError {
			t.Fatalf("500 for %s: %s", vm, resp.Result.Message)
		}
		if len(fx.secrets) != 0 {
			t.Fatalf("%d Secrets written for VirtualMachine %s", len(fx.secrets), vm)
		}
		if !resp.Allowed {
			if resp.Result == nil || strings.TrimSpace(resp.Result.Message) == "" {
				t.Fatalf("refused without a reason: %s", vm)
			}
			return
		}
		if len(resp.Patch) == 0 {
			return
		}
		patch, err := jsonpatchapply.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
		}
		out, err := patch.Apply(vm)
		if err != nil {
			t.Fatalf("patch does not apply to the object as sent: %v\nobject %s\npatch %s", err, vm, resp.Patch)
		}
		var sent, got map[string]any
		if json.Unmarshal(vm, &sent) != nil {
			return // e.g. a number beyond float64 in the spec, kept as sent
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("patched object does not decode: %v\n%s", err, out)
		}
		md, _ := got["metadata"].(map[string]any)
		labels, _ := md["labels"].(map[string]any)
		if labels[ProxyUUIDLabel] != "00000000-0000-4000-8000-000000000001" {
			t.Fatalf("patched object's %s label %v: %s", ProxyUUIDLabel, labels[ProxyUUIDLabel], out)
		}
		// Undo the label: the rest must be the object as sent.
		sentMD, hasMD := sent["metadata"].(map[string]any)
		switch sentLabels, hasLabels := sentMD["labels"].(map[string]any); {
		case !hasMD:
			if v, ok := sent["metadata"]; ok {
				got["metadata"] = v
			} else {
				delete(got, "metadata")
			}
		case !hasLabels:
			if v, ok := sentMD["labels"]; ok {
				md["labels"] = v
			} else {
				delete(md, "labels")
			}
		default:
			if v, ok := sentLabels[ProxyUUIDLabel]; ok {
				labels[ProxyUUIDLabel] = v
			} else {
				delete(labels, ProxyUUIDLabel)
			}
		}
		if !reflect.DeepEqual(got, sent) {
			t.Fatalf("patch changed more than the label:\nsent %s\ngot  %s", vm, out)
		}
	})
}
