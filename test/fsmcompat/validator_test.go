package fsmcompat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	webhookerrors "k8s.io/apiserver/pkg/admission/plugin/webhook/errors"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// vDiff is an expected difference from FSM v1.5.1 as deployed.
type vDiff struct {
	defect string // what FSM gets wrong
	// ours is our message: in the default mode a warning next to FSM's
	// allow, in strict mode the denial. vFSMHandler: the message FSM's own
	// handler returns, although FSM as deployed never calls it.
	ours string
	// deniedByBoth: FSM denies too and ours adds lines (both modes).
	deniedByBoth bool
}

const vFSMHandler = "<FSM's handler's message>"

const (
	vIngressMTLS = "HTTPS ingress with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source"
	vACLMTLS     = "HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source"
	vMTLSDefect  = "https backend whose skipClientCertValidation decodes as false (the table misspells the key) without an AuthenticatedPrincipal source: FSM applies the rule to grpc only, with the flag inverted"
	vNotRouted   = "FSM's handler denies, but FSM's registration never routes the kind, so the apiserver admits it unasked"
)

// vStricter is the allowlist: the only corpus rows where our answer may
// differ from FSM v1.5.1 as deployed (shared/fsm-reference/README.md,
// "Validator rows where a stricter answer from ours is expected").
var vStricter = map[string]vDiff{
	"t03": {vMTLSDefect, vIngressMTLS, false},
	"t04": {vMTLSDefect, vIngressMTLS, false},
	"t21": {vMTLSDefect + "; AccessControl is also never routed", vACLMTLS, false},
	"t22": {vMTLSDefect + "; AccessControl is also never routed", vACLMTLS, false},
	"t16": {"a backend another IngressBackend in the namespace has: FSM's conflict lookup never matches",
		"duplicate backends detected\n[+] IngressBackend default/test-1 conflicts with default/test-2:\nBackend test specified in test-1 and test-2 conflicts\n\n", false},
	"t34": {"a backend another AccessControl in the namespace has: FSM's lookup never matches (and the kind is never routed)",
		"duplicate backends detected\n[+] AccessControlBackend default/test-1 conflicts with default/test-2:\nBackend test specified in test-1 and test-2 conflicts\n\n", false},
	"t25": {vNotRouted, vFSMHandler, false},
	"t27": {vNotRouted, vFSMHandler, false},
	"t29": {vNotRouted, vFSMHandler, false},
	"t30": {vNotRouted, vFSMHandler, false},
	"t31": {vNotRouted, vFSMHandler, false},
	"t32": {vNotRouted, vFSMHandler, false},
	"t44": {vNotRouted, vFSMHandler, false},
	"t47": {vNotRouted, vFSMHandler, false},
	"t48": {vNotRouted, vFSMHandler, false},
	"t14": {"FSM stops at the first error; ours lists every one (the second backend has no protocol)",
		"Duplicate backends detected with service name: test and port: 80\nExpected 'port.protocol' to be 'http', 'https' or 'grpc', got: ", true},
}

// vRow is one validator/tNN.json of the corpus (or one of our own cases in
// testdata/validator, same format).
type vRow struct {
	ID       string                       `json:"id"`
	Desc     string                       `json:"fsmTestRow"`
	Request  admissionv1.AdmissionRequest `json:"request"`
	Existing []vExisting                  `json:"existing"`
	Flags    map[string]bool              `json:"meshConfigFeatureFlags"`
	Handler  struct {
		Allowed bool   `json:"allowed"`
		Message string `json:"message"`
	} `json:"fsmHandler"`
	AsDeployed string `json:"fsmAsDeployed"`
}

// vExisting is an object stored in the cluster before the request.
type vExisting struct {
	Kind   string         `json:"kind"`
	Object map[string]any `json:"object"`
}

// fsmAllowed is FSM as deployed: "allowed", "allowed (kind not routed ...)"
// or "denied".
func (r *vRow) fsmAllowed() bool { return strings.HasPrefix(r.AsDeployed, "allowed") }

// vCorpusDir is <repo>/../shared/fsm-reference (CI clones the repository
// with shared/ beside it). Without it these tests prove nothing: fail.
func vCorpusDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	repo := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	dir := filepath.Join(filepath.Dir(repo), "shared", "fsm-reference")
	if _, err := os.Stat(filepath.Join(dir, "validator")); err != nil {
		t.Fatalf("FSM v1.5.1 reference corpus missing (want <repo>/../shared/fsm-reference, repo %s): %v", repo, err)
	}
	return dir
}

func vRows(t *testing.T, pattern string) []vRow {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no validator rows at %s (%v)", pattern, err)
	}
	rows := make([]vRow, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r vRow
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.ID == "" || r.AsDeployed == "" || len(r.Request.Object.Raw) == 0 {
			t.Fatalf("%s: id, fsmAsDeployed or request.object missing", f)
		}
		rows = append(rows, r)
	}
	return rows
}

// vAnswer is what our served validator answered.
type vAnswer struct {
	allowed  bool
	message  string
	warnings []string
}

// vAsk serves our validator as `serve` wires it (reviewhttp over
// validator.NewHandler, --validate-traffic-target on) over a fake API holding
// the row's existing objects and the mesh's MeshConfig with the row's
// feature flags, and sends the row's request as an AdmissionReview.
func vAsk(t *testing.T, r *vRow, strict bool) vAnswer {
	t.Helper()
	flags := map[string]any{}
	for k, v := range r.Flags {
		flags[k] = v
	}
	mc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.flomesh.io/v1alpha3", "kind": "MeshConfig",
		"metadata": map[string]any{"name": validator.DefaultMeshConfigName, "namespace": validator.DefaultFSMNamespace},
		"spec":     map[string]any{"featureFlags": flags},
	}}
	b := fake.NewClientBuilder().WithObjects(mc)
	for _, e := range r.Existing {
		u := &unstructured.Unstructured{Object: e.Object}
		// FSM's tables write apiVersion v1alpha1; the objects live in their group.
		u.SetAPIVersion(vGroupOf(t, e.Kind) + "/v1alpha1")
		u.SetKind(e.Kind)
		b = b.WithObjects(u)
	}
	h := reviewhttp.NewAdmission(validator.NewHandler(validator.Options{
		Reader: b.Build(), MeshName: validator.DefaultMeshName, FSMNamespace: validator.DefaultFSMNamespace,
		MeshConfigName: validator.DefaultMeshConfigName, ValidateTrafficTarget: true, StrictPolicyValidation: strict,
	}))
	req := r.Request
	req.UID = types.UID("uid-" + r.ID)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &req,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest(http.MethodPost, fsmnames.ValidatorPath, bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, hr)
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(io.Reader(rec.Body)).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("%s: no AdmissionReview response (%v): %s", r.ID, err, rec.Body.String())
	}
	if out.Response.UID != req.UID {
		t.Errorf("%s: uid %q not echoed", r.ID, req.UID)
	}
	a := vAnswer{allowed: out.Response.Allowed, warnings: out.Response.Warnings}
	if out.Response.Result != nil {
		a.message = out.Response.Result.Message
		if !a.allowed {
			// FSM v1.5.1 denies with the message alone (webhook.AdmissionError);
			// the client gets what the apiserver makes of it: 400, no reason
			// ("Error from server: ..."). Ours must reach it the same way,
			// not as 403 Forbidden (an RBAC-looking error) nor as the
			// BadRequest a handler failure is.
			ours := webhookerrors.ToStatusErr(validator.PolicyWebhookName, out.Response.Result.DeepCopy()).ErrStatus
			fsm := webhookerrors.ToStatusErr(validator.PolicyWebhookName, &metav1.Status{Message: a.message}).ErrStatus
			if ours.Code != fsm.Code || ours.Reason != fsm.Reason {
				t.Errorf("%s: the client gets %d %q from our denial, %d %q from FSM's (%s)", r.ID, ours.Code, ours.Reason, fsm.Code, fsm.Reason, a.message)
			}
		}
	}
	return a
}

func vGroupOf(t *testing.T, kind string) string {
	t.Helper()
	switch kind {
	case policy.KindIngressBackend, policy.KindAccessControl, policy.KindUpstreamTrafficSetting, policy.KindEgress, policy.KindEgressGateway, policy.KindAccessCert:
		return "policy.flomesh.io"
	case policy.KindPlugin, policy.KindPluginChain, policy.KindPluginConfig:
		return "plugin.flomesh.io"
	}
	t.Fatalf("existing object of unexpected kind %q", kind)
	return ""
}

// vCompare returns what differs between our answer and FSM as deployed,
// given the allowlisted difference (nil when none), or "" when they agree.
func vCompare(r *vRow, d *vDiff, strict bool, got vAnswer) string {
	fsmAllowed, fsmMsg := r.fsmAllowed(), ""
	if !fsmAllowed {
		fsmMsg = r.Handler.Message
	}
	var wantAllowed bool
	var wantMsg, wantWarning string
	switch {
	case d == nil:
		wantAllowed, wantMsg = fsmAllowed, fsmMsg
	case d.deniedByBoth:
		wantMsg = d.ours
	default:
		ours := d.ours
		if ours == vFSMHandler {
			ours = r.Handler.Message
		}
		if strict {
			wantMsg = ours
		} else {
			wantAllowed, wantWarning = true, strings.Join(strings.Fields(ours), " ")+policy.NotEnforcedSuffix
		}
	}
	var diffs []string
	if got.allowed != wantAllowed {
		diffs = append(diffs, fmt.Sprintf("allowed %v, want %v", got.allowed, wantAllowed))
	}
	if !got.allowed && !wantAllowed && got.message != wantMsg {
		diffs = append(diffs, fmt.Sprintf("message\n\t  ours %q\n\t  want %q", got.message, wantMsg))
	}
	switch {
	case wantWarning != "" && !slices.Contains(got.warnings, wantWarning):
		diffs = append(diffs, fmt.Sprintf("warnings %q, want one %q", got.warnings, wantWarning))
	case wantWarning == "" && d == nil && len(got.warnings) > 0:
		diffs = append(diffs, fmt.Sprintf("warnings %q; FSM gives none", got.warnings))
	}
	return strings.Join(diffs, "; ")
}

// TestValidatorMatchesFSM: every corpus row, in the default and the strict
// mode, answers as FSM v1.5.1 as deployed, except the allowlisted rows.
func TestValidatorMatchesFSM(t *testing.T) {
	rows := vRows(t, filepath.Join(vCorpusDir(t), "validator", "t*.json"))
	seen := map[string]bool{}
	for i := range rows {
		r := &rows[i]
		seen[r.ID] = true
		var d *vDiff
		if x, ok := vStricter[r.ID]; ok {
			d = &x
		}
		for _, strict := range []bool{false, true} {
			mode := map[bool]string{false: "default", true: "strict"}[strict]
			t.Run(r.ID+"/"+mode, func(t *testing.T) {
				if diff := vCompare(r, d, strict, vAsk(t, r, strict)); diff != "" {
					why := "not in the allowlist"
					if d != nil {
						why = "allowlisted for: " + d.defect
					}
					t.Errorf("%s %q (%s mode): FSM as deployed %s (its handler: allowed=%v %q); %s\n\t%s",
						r.ID, r.Desc, mode, r.AsDeployed, r.Handler.Allowed, r.Handler.Message, why, diff)
				}
			})
		}
	}
	for id := range vStricter {
		if !seen[id] {
			t.Errorf("allowlist row %s is not in the corpus", id)
		}
	}
}

// TestValidatorPluginCases: our own Plugin cases (testdata/validator, FSM's
// answer read from its source), which the corpus lacks. No differences
// allowed.
func TestValidatorPluginCases(t *testing.T) {
	for _, r := range vRows(t, filepath.Join("testdata", "validator", "*.json")) {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/strict=%v", r.ID, strict), func(t *testing.T) {
				if diff := vCompare(&r, nil, strict, vAsk(t, &r, strict)); diff != "" {
					t.Errorf("%s %q: FSM as deployed %s %q\n\t%s", r.ID, r.Desc, r.AsDeployed, r.Handler.Message, diff)
				}
			})
		}
	}
}

// TestValidatorRulesMatchFSMCRDs: every resource validator.Rules() routes is
// one of FSM's CRDs (crds/, TrafficTarget from smi_traffic_access.yaml) with
// the same group and plural, the same scope (a Namespaced rule never sees a
// cluster-scoped object), and versions the CRD serves (for MeshConfig, the
// versions our chart's CRD serves); and every FSM CRD is routed.
func TestValidatorRulesMatchFSMCRDs(t *testing.T) {
	fsmCRDs := vReadCRDs(t, filepath.Join(vCorpusDir(t), "crds"))
	ours := vReadCRDs(t, filepath.Join("..", "..", "charts", "fsm-webhooks", "crds"))
	routed := map[string]bool{}
	for _, rule := range validator.Rules() {
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				key := res + "." + group
				routed[key] = true
				crd, ok := fsmCRDs[key]
				if !ok {
					t.Errorf("rule routes %s: FSM has no such CRD", key)
					continue
				}
				wantScope := map[apiextv1.ResourceScope]admv1.ScopeType{
					apiextv1.NamespaceScoped: admv1.NamespacedScope, apiextv1.ClusterScoped: admv1.ClusterScope,
				}[crd.Spec.Scope]
				if rule.Scope == nil || *rule.Scope != wantScope {
					t.Errorf("rule for %s has scope %v; FSM's CRD is %s (want %s)", key, vDeref(rule.Scope), crd.Spec.Scope, wantScope)
				}
				if o, ok := ours[key]; ok && o.Spec.Scope != crd.Spec.Scope {
					t.Errorf("our CRD %s is %s, FSM's %s", key, o.Spec.Scope, crd.Spec.Scope)
				}
				served := vServed(crd)
				if o, ok := ours[key]; ok {
					served = vServed(o)
				}
				for _, v := range rule.APIVersions {
					if !slices.Contains(served, v) {
						t.Errorf("rule routes %s %s; the installed CRD serves %v", key, v, served)
					}
				}
			}
		}
	}
	names := make([]string, 0, len(fsmCRDs))
	for k := range fsmCRDs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !routed[k] {
			t.Errorf("FSM's CRD %s is not routed to the validator", k)
		}
	}
	if len(names) < 11 {
		t.Errorf("read %d FSM CRDs %v, want the 11 kinds the validator handles", len(names), names)
	}
}

func vDeref(s *admv1.ScopeType) string {
	if s == nil {
		return "<unset>"
	}
	return string(*s)
}

func vServed(crd *apiextv1.CustomResourceDefinition) []string {
	var out []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			out = append(out, v.Name)
		}
	}
	return out
}

// vReadCRDs reads every CRD in the YAML files of dir, keyed <plural>.<group>.
func vReadCRDs(t *testing.T, dir string) map[string]*apiextv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s (%v)", dir, err)
	}
	out := map[string]*apiextv1.CustomResourceDefinition{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var crd apiextv1.CustomResourceDefinition
			if err := dec.Decode(&crd); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			out[crd.Spec.Names.Plural+"."+crd.Spec.Group] = &crd
		}
	}
	return out
}

// TestValidatorRegistrationMatchesFSM: our policy webhook has FSM v1.5.1's
// name and namespaceSelector (FSM's pkg/validator/patch.go), with the one
// documented fix: the fsm namespace is excluded by kubernetes.io/metadata.name,
// which the apiserver sets, not by label "name", which nothing sets. It
// routes every kind FSM routes (the MeshConfig webhook, with its own
// selector, routes none of them).
func TestValidatorRegistrationMatchesFSM(t *testing.T) {
	const mesh, fsmNamespace = "fsm", "fsm-system"
	fsmSelector := metav1.LabelSelector{
		MatchLabels: map[string]string{fsmnames.MonitoredByLabel: mesh},
		MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: fsmnames.IgnoreLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
			{Key: "name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fsmNamespace}},
			{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
		},
	}
	fsmRouted := []string{"ingressbackends.policy.flomesh.io", "egresses.policy.flomesh.io", "egressgateways.policy.flomesh.io",
		"plugins.plugin.flomesh.io", "pluginchains.plugin.flomesh.io", "pluginconfigs.plugin.flomesh.io", "traffictargets.access.smi-spec.io"}

	want := fsmSelector.DeepCopy()
	want.MatchExpressions[1].Key = "kubernetes.io/metadata.name" // the fix
	hooks := validator.Webhooks(mesh, fsmNamespace)
	i := slices.IndexFunc(hooks, func(h admv1.ValidatingWebhook) bool { return h.Name == "fsm-validator.k8s.io" })
	if i < 0 {
		t.Fatalf("no webhook named fsm-validator.k8s.io (FSM's) among %d", len(hooks))
	}
	if got := hooks[i].NamespaceSelector; !reflect.DeepEqual(got, want) {
		t.Errorf("policy webhook namespaceSelector %+v, want FSM's with the label fix %+v", got, want)
	}
	routedBy := map[string]string{}
	for _, h := range hooks {
		for _, r := range h.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					routedBy[res+"."+g] = h.Name
				}
			}
		}
	}
	for _, k := range fsmRouted {
		if routedBy[k] != hooks[i].Name {
			t.Errorf("FSM routes %s through its webhook; ours routes it through %q", k, routedBy[k])
		}
	}
}
