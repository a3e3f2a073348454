package chart_test

import (
	"reflect"
	"strings"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestRenderAdmissionPolicies: each policy confining the servers' writes
// names their ServiceAccount, mesh and namespace, fails closed, is bound with
// Deny, can be turned off, and is left out before Kubernetes 1.30 (no
// ValidatingAdmissionPolicy v1). What they refuse is tested on a real
// apiserver in test/chart/install.
func TestRenderAdmissionPolicies(t *testing.T) {
	tests := []struct {
		policy string // name with mesh "blue"
		off    string // value turning it off
		want   []string
	}{
		{"fsm-webhooks-blue-secret-writes", "restrictSecretWrites", []string{
			"'system:serviceaccount:mesh-blue:fsm-webhooks'", "request.namespace == 'mesh-blue'",
			"== 'blue'", "'kubernetes.io/service-account-token'", "['kube-system', 'kube-public']", "'flomesh.io/monitored-by'",
		}},
		{"fsm-webhooks-blue-registration", "restrictRegistrationWrites", []string{
			"'system:serviceaccount:mesh-blue:fsm-webhooks'", "'fsm-webhook-blue'", "'fsm-validator-mesh-blue'",
			"'meshconfigs.config.flomesh.io'", "== 'mesh-blue'", "'fsm-bootstrap'",
		}},
	}
	r := mustRender(t, "fsm: {meshName: blue, fsmNamespace: mesh-blue}")
	old, err := charttest.RenderFor("v1.29.9", ns, mustValues(t, "fsm: {meshName: blue, fsmNamespace: mesh-blue}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			p := mustFind(t, r, "ValidatingAdmissionPolicy", tc.policy)
			spec, _ := yaml.Marshal(nested(t, p, "spec"))
			for _, w := range tc.want {
				if !strings.Contains(string(spec), w) {
					t.Errorf("policy lacks %s:\n%s", w, spec)
				}
			}
			if got := nested(t, p, "spec", "failurePolicy"); got != "Fail" {
				t.Errorf("failurePolicy %v", got)
			}
			b := mustFind(t, r, "ValidatingAdmissionPolicyBinding", tc.policy)
			if got := nested(t, b, "spec", "policyName"); got != tc.policy {
				t.Errorf("binding names policy %v", got)
			}
			if got := nested(t, b, "spec", "validationActions"); len(got.([]any)) != 1 || got.([]any)[0] != "Deny" {
				t.Errorf("validationActions %v", got)
			}
			if old.Find("ValidatingAdmissionPolicy", tc.policy) != nil || old.Find("ValidatingAdmissionPolicyBinding", tc.policy) != nil {
				t.Error("rendered for Kubernetes 1.29")
			}
			off := mustRender(t, "fsm: {meshName: blue, webhooks: {"+tc.off+": false}}")
			if off.Find("ValidatingAdmissionPolicy", tc.policy) != nil || off.Find("ValidatingAdmissionPolicyBinding", tc.policy) != nil {
				t.Errorf("rendered with %s: false", tc.off)
			}
		})
	}
}

// jsonFields are the JSON names of a struct type's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// TestRegistrationPolicyComparesEveryField: the registration policy lets the
// servers change only a webhook's clientConfig.caBundle and a CRD's
// spec.conversion by comparing every other field by name. A field added to
// the API (a k8s.io/api upgrade) would slip through unless listed: this test
// fails until it is.
func TestRegistrationPolicyComparesEveryField(t *testing.T) {
	p := mustFind(t, mustRender(t, ""), "ValidatingAdmissionPolicy", "fsm-webhooks-fsm-registration")
	var kept string
	for _, v := range nested(t, p, "spec", "variables").([]any) {
		if v.(map[string]any)["name"] == "webhooksKept" {
			kept = v.(map[string]any)["expression"].(string)
		}
	}
	if kept == "" {
		t.Fatal("no variable webhooksKept")
	}
	var all strings.Builder
	for _, v := range nested(t, p, "spec", "validations").([]any) {
		all.WriteString(v.(map[string]any)["expression"].(string))
	}
	validations := all.String()

	seen := map[string]bool{}
	for _, typ := range []reflect.Type{reflect.TypeFor[admv1.MutatingWebhook](), reflect.TypeFor[admv1.ValidatingWebhook]()} {
		for _, f := range jsonFields(typ) {
			if f == "clientConfig" || seen[f] {
				continue
			}
			seen[f] = true
			want := "w.?" + f + " == o.?" + f
			if f == "name" {
				want = "o.name == w.name"
			}
			if !strings.Contains(kept, want) {
				t.Errorf("webhooksKept does not compare %s.%s (%q)", typ.Name(), f, want)
			}
		}
	}
	for _, f := range jsonFields(reflect.TypeFor[admv1.WebhookClientConfig]()) {
		if f == "caBundle" {
			continue
		}
		if want := "w.clientConfig.?" + f + " == o.clientConfig.?" + f; !strings.Contains(kept, want) {
			t.Errorf("webhooksKept does not compare clientConfig.%s (%q)", f, want)
		}
	}
	for _, f := range jsonFields(reflect.TypeFor[apiextv1.CustomResourceDefinitionSpec]()) {
		if f == "conversion" {
			continue
		}
		if !strings.Contains(validations, "object.spec."+f+" == oldObject.spec."+f) &&
			!strings.Contains(validations, "object.spec.?"+f+" == oldObject.spec.?"+f) {
			t.Errorf("the CRD's spec.%s is not compared", f)
		}
	}
}
