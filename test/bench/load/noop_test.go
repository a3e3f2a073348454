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
			patch, err := jsonpatchv5.DecodePatch(op)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := patch.Apply(raw)
			if err != nil {
				t.Fatalf("applying %s to %s: %v", op, raw, err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
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

// Only the noop phase's namespaces are matched by the no-op webhook, and
// the meshed phase's still by the mesh.
func TestNoopConfigurationMatchesOnlyNoopNamespaces(t *testing.T) {
	cfg := noopConfiguration(8443, []byte("ca"))
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(cfg.Webhooks))
	}
	wh := cfg.Webhooks[0]
	if *wh.TimeoutSeconds != 20 || *wh.FailurePolicy != admv1.Fail || *wh.SideEffects != admv1.SideEffectClassNone ||
		*wh.ReinvocationPolicy != admv1.NeverReinvocationPolicy || *wh.ClientConfig.URL != "https://127.0.0.1:8443"+noopPath || string(wh.ClientConfig.CABundle) != "ca" {
		t.Errorf("webhook %+v: want timeout 20 s, failurePolicy Fail, sideEffects None, reinvocation Never, https://127.0.0.1:8443%s trusting the CA", wh, noopPath)
	}
	sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespacesOf(3, nsPlain, nsSecret, nsNoop, nsMeshed) {
		l := namespaceLabels(ns)
		isNoop := ns == nsNoop || ns == nsNoop+"-1" || ns == nsNoop+"-2"
		if got := sel.Matches(labels.Set(l)); got != isNoop {
			t.Errorf("namespace %s (labels %v): matched %v, want %v", ns, l, got, isNoop)
		}
		if meshed := l[fsmnames.MonitoredByLabel] == "fsm"; meshed != (ns == nsMeshed || ns == nsMeshed+"-1" || ns == nsMeshed+"-2") {
			t.Errorf("namespace %s (labels %v): monitored by the mesh %v", ns, l, meshed)
		}
	}
}

// The noop phase's client writes the same Secrets as the pod + Secret
// phase's (and deletes them with their pods).
func TestClientWritesSecret(t *testing.T) {
	for ns, want := range map[string]bool{nsPlain: false, nsSecret: true, nsNoop: true, nsMeshed: false} {
		if got := clientWritesSecret(ns); got != want {
			t.Errorf("clientWritesSecret(%s) = %v, want %v", ns, got, want)
		}
	}
}

// The server answers a real AdmissionReview over TLS (HTTP/1.1), trusted by
// the caBundle it registers, with the label patch; a pod that does not decode
// is an error result, not a patch.
func TestNoopServer(t *testing.T) {
	s, err := startNoopServer()
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
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.caPEM) {
		t.Fatalf("caBundle %q holds no certificate", s.caPEM)
	}
	// The client offers h2, as the apiserver's does: the server must pick
	// HTTP/1.1, as serve's listeners do.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	review := func(t *testing.T, object []byte) *admissionv1.AdmissionResponse {
		t.Helper()
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: types.UID("u-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: nsNoop, Name: "p-0", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: object},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", s.port, noopPath), "application/json", bytes.NewReader(body))
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

	t.Run("pod", func(t *testing.T) {
		r := review(t, []byte(`{"metadata":{"name":"p-0","namespace":"noop-secret"},"spec":{"containers":[{"name":"app","image":"app"}]}}`))
		if !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("response %+v: want allowed with a JSON patch", r)
		}
		want := `[{"op":"add","path":"/metadata/labels","value":{"` + noopPodLabel + `":"true"}}]`
		if string(r.Patch) != want {
			t.Errorf("patch %s, want %s", r.Patch, want)
		}
	})
	t.Run("not a pod", func(t *testing.T) {
		r := review(t, []byte(`{"metadata":"nope"}`))
		if r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest || len(r.Patch) != 0 {
			t.Errorf("response %+v: want refused with 400, no patch", r)
		}
	})
}
