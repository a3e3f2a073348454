package validator

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flomesh-io/fsm-webhooks/validator/policy"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp/reviewhttptest"
)

// TestPolicyModesAndRatchet drives the policy kinds through the served HTTP
// handler over a fake API: FSM's enforced rules deny in both modes, rules FSM
// never applied warn by default and deny in strict mode, and an UPDATE only
// denies problems the stored object lacks.
func TestPolicyModesAndRatchet(t *testing.T) {
	const (
		pol  = "policy.flomesh.io/v1alpha1"
		plug = "plugin.flomesh.io/v1alpha1"
		// Existing IngressBackend "first" claims web:80 in namespace apps.
		conflictMsg  = "duplicate backends detected\n[+] IngressBackend apps/second conflicts with apps/first:\nBackend web specified in second and first conflicts\n\n"
		conflictLine = "duplicate backends detected [+] IngressBackend apps/second conflicts with apps/first: Backend web specified in second and first conflicts"
		protoMsg     = "Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: tcp"
		stored       = " (already stored: allowed unchanged, please fix)"
	)
	ib := func(name, port, proto string) string {
		return `{"apiVersion":"` + pol + `","kind":"IngressBackend","metadata":{"name":"` + name + `","namespace":"apps"},` +
			`"spec":{"backends":[{"name":"web","port":{"number":` + port + `,"protocol":"` + proto + `"}}]}}`
	}
	uts := `{"apiVersion":"` + pol + `","kind":"UpstreamTrafficSetting","metadata":{"name":"u","namespace":"apps"},"spec":{"host":"web"}}`
	utsMsg := `spec.host: Invalid value: "web": invalid FQDN specified as host`
	plugin := func(spec string) string {
		return `{"apiVersion":"` + plug + `","kind":"Plugin","metadata":{"name":"p"},"spec":` + spec + `}`
	}
	cases := []struct {
		name         string
		kind         string
		op           admissionv1.Operation
		obj, old     string
		strict       bool
		pluginsOn    bool
		wantDenied   string // the whole message; "" means allowed
		wantWarnings []string
	}{
		{name: "valid", kind: "IngressBackend", obj: ib("second", "81", "http")},
		{name: "conflict FSM never detected: warning", kind: "IngressBackend", obj: ib("second", "80", "http"),
			wantWarnings: []string{conflictLine + policy.NotEnforcedSuffix}},
		{name: "conflict, strict: denied with FSM's message", kind: "IngressBackend", obj: ib("second", "80", "http"), strict: true,
			wantDenied: conflictMsg},
		{name: "FSM's rule denies by default, the skipped one warns", kind: "IngressBackend", obj: ib("second", "80", "tcp"),
			wantDenied: protoMsg, wantWarnings: []string{conflictLine + policy.NotEnforcedSuffix}},
		{name: "namespace from the request when the object has none", kind: "IngressBackend", strict: true,
			obj:        `{"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}}]}}`,
			wantDenied: strings.ReplaceAll(conflictMsg, "second", "x")},
		{name: "kind FSM never routes: warning", kind: "UpstreamTrafficSetting", obj: uts,
			wantWarnings: []string{utsMsg + policy.NotEnforcedSuffix}},
		{name: "kind FSM never routes, strict: denied", kind: "UpstreamTrafficSetting", obj: uts, strict: true, wantDenied: utsMsg},
		{name: "AccessCert with the flag off: warning", kind: "AccessCert", obj: `{"metadata":{"name":"a","namespace":"apps"}}`,
			wantWarnings: []string{policy.AccessCertPolicyDisabled + policy.NotEnforcedSuffix}},
		{name: "update keeping a stored problem: warning, even strict", kind: "IngressBackend", op: admissionv1.Update, strict: true,
			obj: ib("second", "80", "tcp"), old: ib("second", "80", "tcp"),
			wantWarnings: []string{protoMsg + stored, conflictLine + stored}},
		{name: "update adding a problem: denied", kind: "IngressBackend", op: admissionv1.Update, strict: true,
			obj: ib("second", "80", "tcp"), old: ib("second", "80", "http"),
			wantDenied: protoMsg, wantWarnings: []string{conflictLine + stored}},
		{name: "update changing the bad value: denied", kind: "IngressBackend", op: admissionv1.Update,
			obj: ib("second", "81", "udp"), old: ib("second", "81", "tcp"),
			wantDenied: "Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: udp"},
		{name: "cluster-scoped Plugin with pipyscript", kind: "Plugin", pluginsOn: true, obj: plugin(`{"pipyscript":"pipy()"}`)},
		{name: "cluster-scoped Plugin without pipyscript: FSM's message, empty namespace", kind: "Plugin", pluginsOn: true,
			obj: plugin(`{"script":"pipy()"}`), wantDenied: "plugin[p.] is missing pipy script"},
		{name: "cluster-scoped Plugin with a blank pipyscript: FSM's words and why, a warning", kind: "Plugin", pluginsOn: true,
			obj:          plugin(`{"pipyscript":" \n\t"}`),
			wantWarnings: []string{"plugin[p.] is missing pipy script: spec.pipyscript holds only whitespace" + policy.NotEnforcedSuffix}},
		{name: "cluster-scoped Plugin with a blank pipyscript, strict: denied", kind: "Plugin", pluginsOn: true, strict: true,
			obj: plugin(`{"pipyscript":"  "}`), wantDenied: "plugin[p.] is missing pipy script: spec.pipyscript holds only whitespace"},
		{name: "Plugin with plugin policy off", kind: "Plugin", obj: plugin(`{"pipyscript":"pipy()"}`), wantDenied: policy.PluginPolicyDisabled},
		// The gate is the mesh's, not the object's: it ratchets only while the
		// spec is unchanged (metadata edits, e.g. removing a finalizer); a
		// changed spec is denied, as FSM denies it.
		{name: "Plugin spec changed with plugin policy off: denied", kind: "Plugin", op: admissionv1.Update,
			obj: plugin(`{"pipyscript":"pipy(1)"}`), old: plugin(`{"pipyscript":"pipy()"}`),
			wantDenied: policy.PluginPolicyDisabled},
		{name: "Plugin metadata edit with plugin policy off: warning", kind: "Plugin", op: admissionv1.Update,
			obj:          `{"apiVersion":"` + plug + `","kind":"Plugin","metadata":{"name":"p","labels":{"a":"b"}},"spec":{"pipyscript":"pipy()"}}`,
			old:          plugin(`{"pipyscript":"pipy()"}`),
			wantWarnings: []string{policy.PluginPolicyDisabled + stored}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := reviewhttp.NewAdmission(NewHandler(Options{
				Reader: fakeReader(t, tc.pluginsOn,
					ib("first", "80", "http")), StrictPolicyValidation: tc.strict,
			}))
			group, version, _ := strings.Cut(pol, "/")
			ns := "apps"
			if tc.kind == "Plugin" {
				group, version, _ = strings.Cut(plug, "/")
				ns = ""
			}
			op := tc.op
			if op == "" {
				op = admissionv1.Create
			}
			ar := admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
				UID: types.UID("uid"), Kind: metav1.GroupVersionKind{Group: group, Version: version, Kind: tc.kind},
				Operation: op, Namespace: ns, Name: "x",
				Object: runtime.RawExtension{Raw: []byte(tc.obj)},
			}}
			if tc.old != "" {
				ar.Request.OldObject.Raw = []byte(tc.old)
			}
			ar.APIVersion, ar.Kind = "admission.k8s.io/v1", "AdmissionReview"
			body, err := json.Marshal(ar)
			if err != nil {
				t.Fatal(err)
			}
			out := post(t, h, "application/json", body).Response
			gotDenied := ""
			if !out.Allowed {
				gotDenied = out.Result.Message
			}
			if gotDenied != tc.wantDenied {
				t.Errorf("denial\n got %q\nwant %q", gotDenied, tc.wantDenied)
			}
			if !slices.Equal(out.Warnings, tc.wantWarnings) {
				t.Errorf("warnings\n got %q\nwant %q", out.Warnings, tc.wantWarnings)
			}
		})
	}
}

// fakeReader holds the mesh's MeshConfig (plugin policy on or off) and the
// given policy objects (JSON).
func fakeReader(t *testing.T, pluginsOn bool, objs ...string) client.Reader {
	t.Helper()
	mc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.flomesh.io/v1alpha3", "kind": "MeshConfig",
		"metadata": map[string]any{"name": DefaultMeshConfigName, "namespace": DefaultFSMNamespace},
		"spec":     map[string]any{"featureFlags": map[string]any{"enablePluginPolicy": pluginsOn}},
	}}
	b := fake.NewClientBuilder().WithObjects(mc)
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(o)); err != nil {
			t.Fatal(err)
		}
		b = b.WithObjects(u)
	}
	return b.Build()
}

// TestWarnedDecisionsCounted: served as serve does, an allow with warnings
// counts as "warned", the number operators watch before turning strict
// policy validation on.
func TestWarnedDecisionsCounted(t *testing.T) {
	h := reviewhttp.NewAdmission(NewHandler(Options{Reader: fakeReader(t, false)})).Named("validator-warned-test")
	for _, tc := range []struct {
		obj        string
		wantResult string
	}{
		{obj: `{"metadata":{"name":"u","namespace":"apps"},"spec":{"host":"web"}}`, wantResult: reviewhttp.ResultWarned},
		{obj: `{"metadata":{"name":"u","namespace":"apps"},"spec":{"host":"web.apps.svc"}}`, wantResult: reviewhttp.ResultAllowed},
	} {
		before := reviewhttptest.Requests(t, "validator-warned-test", tc.wantResult)
		ar := admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
			UID:       "uid",
			Kind:      metav1.GroupVersionKind{Group: "policy.flomesh.io", Version: "v1alpha1", Kind: "UpstreamTrafficSetting"},
			Operation: admissionv1.Create, Namespace: "apps", Name: "u", Object: runtime.RawExtension{Raw: []byte(tc.obj)},
		}}
		ar.APIVersion, ar.Kind = "admission.k8s.io/v1", "AdmissionReview"
		body, err := json.Marshal(ar)
		if err != nil {
			t.Fatal(err)
		}
		if out := post(t, h, "application/json", body).Response; !out.Allowed {
			t.Fatalf("denied: %+v", out.Result)
		}
		if got := reviewhttptest.Requests(t, "validator-warned-test", tc.wantResult) - before; got != 1 {
			t.Errorf("%s: fsm_webhooks_requests_total{result=%q} grew by %v, want 1", tc.obj, tc.wantResult, got)
		}
	}
}
