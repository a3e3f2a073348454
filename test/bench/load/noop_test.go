package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	jsonpatchv5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

func TestNoopLabelPatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"no labels", nil},
		{"empty labels", map[string]string{}},
		{"other labels", map[string]string{"app": "a", "x/y~z": "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: tc.labels}}
			raw, err := json.Marshal(&pod)
			if err != nil {
				t.Fatal(err)
			}
			op, err := json.Marshal([]any{noopLabelPatch(pod.Labels)})
			if err != nil {
				t.Fatal(err)
			}
			got := applyPatch(t, raw, op)
			want := maps.Clone(tc.labels)
			if want == nil {
				want = map[string]string{}
			}
			want[noopPodLabel] = "true"
			if !maps.Equal(got.Labels, want) {
				t.Errorf("labels after %s: %v, want %v", op, got.Labels, want)
			}
		})
	}
}

// Each tool webhook matches only its own phase's namespaces, and the meshed
// phase's are still matched by the mesh.
func TestToolWebhookConfigurationMatchesOnlyItsNamespaces(t *testing.T) {
	all := namespacesOf(3, nsPlain, nsSecret, nsNoop, nsSized, nsMeshed)
	for _, tc := range []struct {
		w    toolWebhook
		base string
	}{
		{noopWebhook, nsNoop},
		{sizedWebhook(&sizedAnswer{}), nsSized},
	} {
		t.Run(tc.w.name, func(t *testing.T) {
			cfg := tc.w.configuration(8443, []byte("ca"))
			if len(cfg.Webhooks) != 1 || cfg.Name != "fsm-load-"+tc.w.name {
				t.Fatalf("configuration %s with %d webhooks, want fsm-load-%s with 1", cfg.Name, len(cfg.Webhooks), tc.w.name)
			}
			wh := cfg.Webhooks[0]
			if *wh.TimeoutSeconds != 20 || *wh.FailurePolicy != admv1.Fail || *wh.SideEffects != admv1.SideEffectClassNone ||
				*wh.ReinvocationPolicy != admv1.NeverReinvocationPolicy || *wh.ClientConfig.URL != "https://127.0.0.1:8443"+tc.w.path || string(wh.ClientConfig.CABundle) != "ca" {
				t.Errorf("webhook %+v: want timeout 20 s, failurePolicy Fail, sideEffects None, reinvocation Never, https://127.0.0.1:8443%s trusting the CA", wh, tc.w.path)
			}
			sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range all {
				l := namespaceLabels(ns)
				own := slices.Contains(namespacesOf(3, tc.base), ns)
				if got := sel.Matches(labels.Set(l)); got != own {
					t.Errorf("namespace %s (labels %v): matched %v, want %v", ns, l, got, own)
				}
				if meshed := l[fsmnames.MonitoredByLabel] == "fsm"; meshed != slices.Contains(namespacesOf(3, nsMeshed), ns) {
					t.Errorf("namespace %s (labels %v): monitored by the mesh %v", ns, l, meshed)
				}
			}
		})
	}
}

// The noop and sized phases' clients write the same Secrets as the pod +
// Secret phase's (and delete them with their pods).
func TestClientWritesSecret(t *testing.T) {
	for ns, want := range map[string]bool{nsPlain: false, nsSecret: true, nsNoop: true, nsSized: true, nsMeshed: false} {
		if got := clientWritesSecret(ns); got != want {
			t.Errorf("clientWritesSecret(%s) = %v, want %v", ns, got, want)
		}
	}
}

// Each tool webhook's server answers a real AdmissionReview over TLS
// (HTTP/1.1), trusted by the caBundle it registers, with its patch; a pod
// that does not decode, or is not the phase's, is an error result, not a
// patch.
func TestToolWebhookServers(t *testing.T) {
	sized := testSizedAnswer(t, serveSettings(t, chartCertKeyBits), meshedMesh(false), namespacesOf(2, nsSized))
	for _, tc := range []struct {
		w toolWebhook
		// pod is what the client sends; patched checks the answer applied
		// to it.
		pod     *corev1.Pod
		patched func(*corev1.Pod) error
		refused []string // objects answered 400
	}{
		{noopWebhook, clientPod(client.ObjectKey{Namespace: nsNoop, Name: "p-0"}), noopWebhook.admitted,
			[]string{`{"metadata":"nope"}`}},
		{sizedWebhook(sized), clientPod(client.ObjectKey{Namespace: nsSized + "-1", Name: "p-7"}), sizedInjected,
			[]string{`{"metadata":"nope"}`, `{"metadata":{"name":"p-0","namespace":"plain-secret"}}`}},
	} {
		t.Run(tc.w.name, func(t *testing.T) {
			s, err := startWebhookServer(tc.w)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.stop(ctx); err != nil {
					t.Error(err)
				}
			})
			raw, err := json.Marshal(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			r := review(t, s, tc.w.path, tc.pod.Namespace, raw)
			if !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("response %+v: want allowed with a JSON patch", r)
			}
			got := applyPatch(t, raw, r.Patch)
			if err := tc.patched(got); err != nil {
				t.Errorf("patch %s: %v", r.Patch, err)
			}
			for _, obj := range tc.refused {
				r := review(t, s, tc.w.path, tc.pod.Namespace, []byte(obj))
				if r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest || len(r.Patch) != 0 {
					t.Errorf("%s: response %+v: want refused with 400, no patch", obj, r)
				}
			}
		})
	}
}

// review posts an AdmissionReview of a pod create to the server at path.
func review(t *testing.T, s *webhookServer, path, namespace string, object []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.caPEM) {
		t.Fatalf("caBundle %q holds no certificate", s.caPEM)
	}
	// The client offers h2, as the apiserver's does: the server must pick
	// HTTP/1.1, as serve's listeners do.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("u-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: object},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", s.port, path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("protocol %s, want HTTP/1.1", resp.Proto)
	}
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &ar); err != nil || ar.Response == nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	if ar.Response.UID != "u-1" {
		t.Errorf("uid %q, want the request's u-1", ar.Response.UID)
	}
	return ar.Response
}

// applyPatch applies a JSON patch to a pod's JSON, as the apiserver does.
func applyPatch(t *testing.T, pod, patch []byte) *corev1.Pod {
	t.Helper()
	p, err := jsonpatchv5.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	patched, err := p.Apply(pod)
	if err != nil {
		t.Fatalf("applying %s to %s: %v", patch, pod, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}
