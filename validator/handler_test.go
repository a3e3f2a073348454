package validator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// These tests go through the HTTP wrapper exactly as served (reviewhttp, then
// controller-runtime's admission.Webhook.Handle), without an apiserver; the rules
// that read other objects are covered by the envtest suite.

func server(t testing.TB) *reviewhttp.Admission {
	t.Helper()
	return reviewhttp.NewAdmission(NewHandler(Options{FSMNamespace: "fsm-system"}))
}

func presetJSON(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// withSidecarLogLevel returns the MeshConfig JSON obj with
// spec.sidecar.logLevel set to level.
func withSidecarLogLevel(t testing.TB, obj []byte, level string) []byte {
	t.Helper()
	var u map[string]any
	if err := json.Unmarshal(obj, &u); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u, level, "spec", "sidecar", "logLevel"); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func review(t testing.TB, uid, group, version, kind string, op admissionv1.Operation, obj []byte) []byte {
	t.Helper()
	ar := admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID:       types.UID(uid),
		Kind:      metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
		Operation: op,
		Namespace: "fsm-system",
		Name:      "fsm-mesh-config",
		Object:    runtime.RawExtension{Raw: obj},
	}}
	ar.APIVersion, ar.Kind = "admission.k8s.io/v1", "AdmissionReview"
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t testing.TB, h http.Handler, contentType string, body []byte) admissionv1.AdmissionReview {
	t.Helper()
	rec := httptest.NewRecorder()
	var r io.Reader = http.NoBody
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(http.MethodPost, "/validate", r)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	h.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, rec.Body.String())
	}
	if out.Response == nil {
		t.Fatalf("no response in %s", rec.Body.String())
	}
	return out
}

func TestHTTP(t *testing.T) {
	h := server(t)
	preset := presetJSON(t)
	bad := withSidecarLogLevel(t, preset, "loud")
	if bytes.Equal(bad, preset) {
		t.Fatal("test setup: sidecar logLevel not found in preset")
	}
	cases := []struct {
		name        string
		body        []byte
		wantUID     string
		wantAllowed bool
		wantCode    int32
		wantMsg     string
		wantWarn    int
	}{
		{name: "valid v1alpha3 create", body: review(t, "u1", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Create, preset),
			wantUID: "u1", wantAllowed: true, wantCode: 200},
		{name: "valid v1alpha1 create warns", body: review(t, "u2", meshconfig.Group, "v1alpha1", "MeshConfig", admissionv1.Create, preset),
			wantUID: "u2", wantAllowed: true, wantCode: 200, wantWarn: 1},
		{name: "invalid create is 422 with the field", body: review(t, "u3", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Create, bad),
			wantUID: "u3", wantCode: 422, wantMsg: `MeshConfig.config.flomesh.io "fsm-mesh-config" is invalid: spec.sidecar.logLevel: Unsupported value: "loud"`},
		{name: "unknown kind", body: review(t, "u4", "apps", "v1", "Deployment", admissionv1.Create, []byte(`{}`)),
			wantUID: "u4", wantCode: 400, wantMsg: "unknown gvk: apps/v1, Kind=Deployment"},
		{name: "unknown MeshConfig version", body: review(t, "u5", meshconfig.Group, "v2", "MeshConfig", admissionv1.Create, preset),
			wantUID: "u5", wantCode: 400, wantMsg: "unknown gvk: config.flomesh.io/v2, Kind=MeshConfig"},
		{name: "no object", body: review(t, "u6", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Update, nil),
			wantUID: "u6", wantCode: 400, wantMsg: "UPDATE MeshConfig: no object in the request"},
		{name: "policy object not JSON object", body: review(t, "u7", "policy.flomesh.io", "v1alpha1", "Egress", admissionv1.Create, []byte(`[1]`)),
			wantUID: "u7", wantCode: 400, wantMsg: "decoding the object"},
		{name: "missing request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
			wantCode: 400, wantMsg: "the AdmissionReview has no request"},
		{name: "not an AdmissionReview", body: []byte(`{"apiVersion":"v1","kind":"Pod","request":{"uid":"x"}}`),
			wantCode: 400, wantMsg: `expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got apiVersion "v1" kind "Pod"`},
		// Another content type or an empty body is refused before decoding,
		// with a plain HTTP status: reviewhttp's TestTransport.
		{name: "garbage body", body: []byte("{not json"), wantCode: 400, wantMsg: "the body is not an AdmissionReview: jsontext: invalid character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := post(t, h, "application/json", tc.body).Response
			if string(out.UID) != tc.wantUID {
				t.Errorf("uid %q, want %q", out.UID, tc.wantUID)
			}
			if out.Allowed != tc.wantAllowed {
				t.Errorf("allowed %v, want %v (%+v)", out.Allowed, tc.wantAllowed, out.Result)
			}
			if out.Result == nil || out.Result.Code != tc.wantCode {
				t.Errorf("result %+v, want code %d", out.Result, tc.wantCode)
			}
			if tc.wantMsg != "" && (out.Result == nil || !strings.Contains(out.Result.Message, tc.wantMsg)) {
				t.Errorf("message %q lacks %q", out.Result.Message, tc.wantMsg)
			}
			if len(out.Warnings) != tc.wantWarn {
				t.Errorf("warnings %q, want %d", out.Warnings, tc.wantWarn)
			}
		})
	}
}

func TestDeniedCarriesCauses(t *testing.T) {
	h := server(t)
	obj, err := DemoInvalidMeshConfig("fsm-system", "fsm-mesh-config")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	out := post(t, h, "application/json", review(t, "u", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Create, raw)).Response
	if out.Allowed || out.Result.Details == nil || len(out.Result.Details.Causes) != 5 {
		t.Fatalf("want 5 causes, got %+v", out.Result)
	}
	fields := []string{}
	for _, c := range out.Result.Details.Causes {
		fields = append(fields, c.Field)
	}
	want := "spec.sidecar.logLevel spec.sidecar.sidecarImage spec.sidecar.configResyncInterval spec.traffic.outboundIPRangeInclusionList[0] spec.observability.tracing.sampledFraction"
	if strings.Join(fields, " ") != want {
		t.Errorf("cause fields %q, want %q", strings.Join(fields, " "), want)
	}
}

// A huge string value is quoted shortened in the denial (message and cause),
// cut on a character boundary and marked with its size; others whole.
func TestDeniedShortensHugeValues(t *testing.T) {
	h := server(t)
	preset := presetJSON(t)
	const supported = `: supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`
	x255 := strings.Repeat("x", 255)
	cases := []struct {
		name, value, wantValue string
	}{
		{"at the bound", x255 + "y", `"` + x255 + `y"`},
		{"above it", x255 + "yz", `"` + x255 + `y...[257 bytes in all]"`},
		{"a character across the bound", x255 + "é" + strings.Repeat("z", 1000), `"` + x255 + `...[1257 bytes in all]"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := withSidecarLogLevel(t, preset, tc.value)
			out := post(t, h, "application/json", review(t, "u", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Create, obj)).Response
			if out.Allowed || out.Result == nil || out.Result.Details == nil || len(out.Result.Details.Causes) != 1 {
				t.Fatalf("want one cause, got %+v", out.Result)
			}
			body := "Unsupported value: " + tc.wantValue + supported
			if want := `MeshConfig.config.flomesh.io "fsm-mesh-config" is invalid: spec.sidecar.logLevel: ` + body; out.Result.Message != want {
				t.Errorf("message\n got %q\nwant %q", out.Result.Message, want)
			}
			if c := out.Result.Details.Causes[0]; c.Field != "spec.sidecar.logLevel" || c.Message != body {
				t.Errorf("cause %q %q, want %q", c.Field, c.Message, body)
			}
		})
	}
}

// A huge number where a string belongs is shown as written (a json.Number),
// so it is shortened as a string is, not quoted whole.
func TestDeniedShortensHugeNumbers(t *testing.T) {
	digits := strings.Repeat("1", 1000)
	obj := bytes.Replace(withSidecarLogLevel(t, presetJSON(t), "LEVEL"), []byte(`"LEVEL"`), []byte(digits), 1)
	out := post(t, server(t), "application/json", review(t, "u", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Create, obj)).Response
	if out.Allowed || out.Result == nil || out.Result.Details == nil || len(out.Result.Details.Causes) != 1 {
		t.Fatalf("want one cause, got %+v", out.Result)
	}
	body := "Invalid value: " + digits[:256] + "...[1000 bytes in all]: must be a string"
	if want := `MeshConfig.config.flomesh.io "fsm-mesh-config" is invalid: spec.sidecar.logLevel: ` + body; out.Result.Message != want {
		t.Errorf("message\n got %q\nwant %q", out.Result.Message, want)
	}
	if c := out.Result.Details.Causes[0]; c.Field != "spec.sidecar.logLevel" || c.Message != body {
		t.Errorf("cause %q %q, want %q", c.Field, c.Message, body)
	}
}

func TestRulesMatchHandledKinds(t *testing.T) {
	// Every resource in Rules must reach a validator, never "unknown gvk";
	// plural -> kind as the CRDs define them.
	kinds := map[string]string{
		"meshconfigs": "MeshConfig", "traffictargets": "TrafficTarget", "ingressbackends": "IngressBackend",
		"accesscontrols": "AccessControl", "egresses": "Egress", "upstreamtrafficsettings": "UpstreamTrafficSetting",
		"egressgateways": "EgressGateway", "accesscerts": "AccessCert", "plugins": "Plugin", "pluginchains": "PluginChain",
		"pluginconfigs": "PluginConfig",
	}
	h := server(t)
	n := 0
	for _, r := range Rules() {
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					kind, ok := kinds[res]
					if !ok {
						t.Errorf("rule resource %s has no known kind", res)
						continue
					}
					n++
					out := post(t, h, "application/json", review(t, "x", g, v, kind, admissionv1.Create, []byte(`{"metadata":{"name":"x","namespace":"y"}}`))).Response
					if out.Result != nil && strings.Contains(out.Result.Message, "unknown gvk") {
						t.Errorf("%s/%s %s routed but not handled: %s", g, v, kind, out.Result.Message)
					}
				}
			}
		}
	}
	if n != 3+1+6+3 {
		t.Errorf("Rules covers %d group-version-resources, want 13", n)
	}
}

// TestMeshConfigIdentity: in the mesh namespace only MeshConfigName is
// admitted on CREATE. Name and namespace are immutable, so on UPDATE the
// error is always the stored object's own: it only warns (ratcheting), and
// a stray MeshConfig left over from FSM can still be edited, e.g. to remove
// a finalizer, which would otherwise leave it Terminating forever. A new
// problem in the same update still denies.
func TestMeshConfigIdentity(t *testing.T) {
	preset := presetJSON(t)
	withName := func(name, extra string) []byte {
		b := bytes.Replace(preset, []byte(`"name":"fsm-mesh-config"`), []byte(`"name":"`+name+`"`+extra), 1)
		if bytes.Equal(b, preset) && name != "fsm-mesh-config" {
			t.Fatal("test setup: metadata.name not found in preset")
		}
		return b
	}
	const stray = "fsm-mesh-config-backup"
	identityErr := `metadata.name: Invalid value: "` + stray + `": the mesh in namespace fsm-system reads only the MeshConfig named "fsm-mesh-config"; one MeshConfig per mesh namespace`
	finalized := withName(stray, `,"finalizers":["example.com/keep"]`)
	badLevel := withSidecarLogLevel(t, withName(stray, ""), "loud")
	cases := []struct {
		name        string
		op          admissionv1.Operation
		ns          string
		obj, old    []byte
		wantAllowed bool
		wantMsg     string // in the denial
		wantWarning string // among the warnings
	}{
		{name: "create the mesh's MeshConfig", op: admissionv1.Create, ns: "fsm-system", obj: preset, wantAllowed: true},
		{name: "create a second MeshConfig in the mesh namespace", op: admissionv1.Create, ns: "fsm-system", obj: withName(stray, ""),
			wantMsg: identityErr},
		{name: "create elsewhere under any name", op: admissionv1.Create, ns: "apps", obj: bytes.Replace(withName(stray, ""), []byte(`"namespace":"fsm-system"`), []byte(`"namespace":"apps"`), 1),
			wantAllowed: true},
		{name: "update of a stray MeshConfig removing its finalizer", op: admissionv1.Update, ns: "fsm-system", obj: withName(stray, ""), old: finalized,
			wantAllowed: true, wantWarning: identityErr + ratchet.Suffix},
		{name: "update of a stray MeshConfig adding a bad field", op: admissionv1.Update, ns: "fsm-system", obj: badLevel, old: finalized,
			wantMsg: `spec.sidecar.logLevel: Unsupported value: "loud"`, wantWarning: identityErr + ratchet.Suffix},
	}
	h := NewHandler(Options{FSMNamespace: "fsm-system"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID:       "u",
				Kind:      metav1.GroupVersionKind{Group: meshconfig.Group, Version: "v1alpha3", Kind: "MeshConfig"},
				Operation: tc.op,
				Namespace: tc.ns,
				Object:    runtime.RawExtension{Raw: tc.obj},
				OldObject: runtime.RawExtension{Raw: tc.old},
			}})
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed %v, want %v: %+v", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if tc.wantMsg != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.wantMsg)) {
				t.Errorf("denial %+v lacks %q", resp.Result, tc.wantMsg)
			}
			if tc.wantMsg != "" && strings.Contains(resp.Result.Message, "metadata.name") && tc.op == admissionv1.Update {
				t.Errorf("UPDATE denied for the immutable name: %s", resp.Result.Message)
			}
			if tc.wantWarning != "" && !slices.Contains(resp.Warnings, tc.wantWarning) {
				t.Errorf("warnings %q lack %q", resp.Warnings, tc.wantWarning)
			}
			if tc.wantWarning == "" && len(resp.Warnings) != 0 {
				t.Errorf("unexpected warnings %q", resp.Warnings)
			}
		})
	}
}
