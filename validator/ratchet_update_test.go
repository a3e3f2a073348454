package validator

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// sendUpdate sends an UPDATE of a policy object through the served handler
// (default, compatible mode) and returns the response.
func sendUpdate(t *testing.T, pluginsOn bool, group, kind, ns, obj, old string) *admissionv1.AdmissionResponse {
	t.Helper()
	h := reviewhttp.NewAdmission(NewHandler(Options{Reader: fakeReader(t, pluginsOn)}))
	ar := admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID: types.UID("uid"), Kind: metav1.GroupVersionKind{Group: group, Version: "v1alpha1", Kind: kind},
		Operation: admissionv1.Update, Namespace: ns, Name: "x",
		Object:    runtime.RawExtension{Raw: []byte(obj)},
		OldObject: runtime.RawExtension{Raw: []byte(old)},
	}}
	ar.APIVersion, ar.Kind = "admission.k8s.io/v1", "AdmissionReview"
	body, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return post(t, h, "application/json", body).Response
}

func storedWarnings(ws []string) int {
	n := 0
	for _, w := range ws {
		if strings.HasSuffix(w, ratchet.Suffix) {
			n++
		}
	}
	return n
}

// TestUpdateRatchetNewProblemSameMessage: the README promises that on UPDATE
// "a new or changed problem still denies". FSM v1.5.1 denies these
// IngressBackends (routed kind, FSM-enforced source rules,
// pkg/validator/validators.go ingressBackendValidator), and its source
// messages do not name the value: a different or an additional bad source
// must not be taken for the stored one. An unchanged stored problem, or one
// whose list was only reordered or extended by a valid entry, still warns.
func TestUpdateRatchetNewProblemSameMessage(t *testing.T) {
	ib := func(sources string) string {
		return `{"apiVersion":"policy.flomesh.io/v1alpha1","kind":"IngressBackend","metadata":{"name":"ib","namespace":"apps"},` +
			`"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}}],"sources":` + sources + `}}`
	}
	const (
		badKind = "Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange"
		noNS    = "'source.namespace' not specified for source kind Service"
	)
	cases := []struct {
		name       string
		obj, old   string
		wantDenied string // the whole message; "" means allowed
		wantStored int
	}{
		{name: "source kind changed from Pod to Deployment (a changed problem)",
			old: ib(`[{"kind":"Pod","name":"a"}]`), obj: ib(`[{"kind":"Deployment","name":"a"}]`),
			wantDenied: badKind},
		{name: "a second Service source without namespace added (a new problem)",
			old: ib(`[{"kind":"Service","name":"a"}]`), obj: ib(`[{"kind":"Service","name":"a"},{"kind":"Service","name":"b"}]`),
			wantDenied: noNS, wantStored: 1},
		{name: "the Service source without namespace replaced by another (a changed problem)",
			old: ib(`[{"kind":"Service","name":"a"}]`), obj: ib(`[{"kind":"Service","name":"evil"}]`),
			wantDenied: noNS},
		{name: "the same bad source twice (a new copy)",
			old: ib(`[{"kind":"Pod","name":"a"}]`), obj: ib(`[{"kind":"Pod","name":"a"},{"kind":"Pod","name":"a"}]`),
			wantDenied: badKind, wantStored: 1},
		{name: "stored problem unchanged: warning",
			old: ib(`[{"kind":"Pod","name":"a"}]`), obj: ib(`[{"kind":"Pod","name":"a"}]`), wantStored: 1},
		{name: "stored problems reordered, valid source added: warnings",
			old: ib(`[{"kind":"Pod","name":"a"},{"kind":"Service","name":"b"}]`),
			obj: ib(`[{"kind":"IPRange","name":"10.0.0.0/8"},{"kind":"Service","name":"b"},{"kind":"Pod","name":"a"}]`), wantStored: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := sendUpdate(t, false, "policy.flomesh.io", "IngressBackend", "apps", tc.obj, tc.old)
			gotDenied := ""
			if !out.Allowed {
				gotDenied = out.Result.Message
			}
			if gotDenied != tc.wantDenied || storedWarnings(out.Warnings) != tc.wantStored {
				t.Errorf("denied %q, warnings %q; want denied %q, %d stored", gotDenied, out.Warnings, tc.wantDenied, tc.wantStored)
			}
		})
	}
}

// TestUpdatePluginGateRatchet: with featureFlags.enablePluginPolicy off, FSM
// denies every Plugin, PluginChain and PluginConfig CREATE and UPDATE
// (pluginValidator checks the flag first). The gate ratchets only while the
// spec is unchanged, so metadata edits (a finalizer removed, a label) stay
// possible; a changed spec, such as a replaced pipy script, is denied.
func TestUpdatePluginGateRatchet(t *testing.T) {
	obj := func(kind, meta, spec string) string {
		return `{"apiVersion":"plugin.flomesh.io/v1alpha1","kind":"` + kind + `","metadata":{"name":"p"` + meta + `},"spec":` + spec + `}`
	}
	cases := []struct {
		name, kind string
		obj, old   string
		pluginsOn  bool
		wantDenied bool
	}{
		{name: "Plugin script replaced", kind: "Plugin", wantDenied: true,
			obj: obj("Plugin", ``, `{"pipyscript":"pipy().pipeline().replaceMessage(() => new Message('pwned'))"}`),
			old: obj("Plugin", ``, `{"pipyscript":"pipy()"}`)},
		{name: "Plugin finalizer removed", kind: "Plugin",
			obj: obj("Plugin", ``, `{"pipyscript":"pipy()"}`),
			old: obj("Plugin", `,"finalizers":["example.com/f"]`, `{"pipyscript":"pipy()"}`)},
		{name: "PluginChain spec changed", kind: "PluginChain", wantDenied: true,
			obj: obj("PluginChain", ``, `{"chains":[{"name":"inbound-http","plugins":["p"]}]}`),
			old: obj("PluginChain", ``, `{"chains":[]}`)},
		{name: "PluginConfig label added", kind: "PluginConfig",
			obj: obj("PluginConfig", `,"labels":{"a":"b"}`, `{"plugin":"p","config":{"k":1}}`),
			old: obj("PluginConfig", ``, `{"plugin":"p","config":{"k":1}}`)},
		{name: "plugin policy on: script replaced", kind: "Plugin", pluginsOn: true,
			obj: obj("Plugin", ``, `{"pipyscript":"pipy(1)"}`), old: obj("Plugin", ``, `{"pipyscript":"pipy()"}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := sendUpdate(t, tc.pluginsOn, "plugin.flomesh.io", tc.kind, "", tc.obj, tc.old)
			switch {
			case tc.wantDenied && (out.Allowed || out.Result.Message != policy.PluginPolicyDisabled):
				t.Errorf("allowed %v (%v, warnings %q); FSM denies %q", out.Allowed, out.Result, out.Warnings, policy.PluginPolicyDisabled)
			case !tc.wantDenied && !out.Allowed:
				t.Errorf("denied: %v", out.Result)
			case !tc.wantDenied && !tc.pluginsOn && storedWarnings(out.Warnings) != 1:
				t.Errorf("warnings %q; want the gate as a stored problem", out.Warnings)
			}
		})
	}
}

// TestUpdateWithUnreadableStoredObjectJudgedAsNew: a stored object the
// lenient types cannot read excuses nothing, so the new object's problems
// deny with FSM's message; the request itself is no bad request.
func TestUpdateWithUnreadableStoredObjectJudgedAsNew(t *testing.T) {
	const obj = `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}}],"sources":[{"kind":"Pod","name":"a"}]}}`
	const old = `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":"not a list"}}`
	resp := sendUpdate(t, false, "policy.flomesh.io", policy.KindIngressBackend, "ns", obj, old)
	const want = "Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange"
	if resp.Allowed || resp.Result == nil || resp.Result.Message != want {
		t.Fatalf("allowed %v, result %+v; want denied with %q", resp.Allowed, resp.Result, want)
	}
	if storedWarnings(resp.Warnings) != 0 {
		t.Errorf("warnings %q: nothing is stored", resp.Warnings)
	}
}

// TestMeshConfigUpdateRatchetsStoredProblem: through the handler, an UPDATE
// of the mesh's MeshConfig that keeps a problem the stored object has is
// admitted with the problem as a warning; the same object created is denied.
func TestMeshConfigUpdateRatchetsStoredProblem(t *testing.T) {
	bad := withSidecarLogLevel(t, presetJSON(t), "loud")
	h := NewHandler(Options{FSMNamespace: "fsm-system"})
	send := func(op admissionv1.Operation, old []byte) admission.Response {
		return h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "u",
			Kind:      metav1.GroupVersionKind{Group: meshconfig.Group, Version: "v1alpha3", Kind: meshconfig.Kind},
			Operation: op, Namespace: "fsm-system", Name: "fsm-mesh-config",
			Object:    runtime.RawExtension{Raw: bad},
			OldObject: runtime.RawExtension{Raw: old},
		}})
	}
	const problem = `spec.sidecar.logLevel: Unsupported value: "loud"`
	if resp := send(admissionv1.Create, nil); resp.Allowed || !strings.Contains(resp.Result.Message, problem) {
		t.Errorf("CREATE: allowed %v, result %+v; want denied for %q", resp.Allowed, resp.Result, problem)
	}
	resp := send(admissionv1.Update, bad)
	if !resp.Allowed {
		t.Fatalf("UPDATE keeping the stored problem denied: %+v", resp.Result)
	}
	if !slices.ContainsFunc(resp.Warnings, func(w string) bool {
		return strings.HasPrefix(w, problem) && strings.HasSuffix(w, ratchet.Suffix)
	}) {
		t.Errorf("warnings %q lack the stored problem %q", resp.Warnings, problem)
	}
}
