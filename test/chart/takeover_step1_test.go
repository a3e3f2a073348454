package chart_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// fsmValidatorKinds is the validators map of FSM v1.5.1's controller
// (pkg/validator/server.go, NewValidatingWebhook): group/resource it knows.
// Anything else is answered `webhook.AdmissionError(fmt.Errorf("unknown gvk:
// %s", gvk))`, i.e. denied.
var fsmValidatorKinds = map[string]bool{
	"policy.flomesh.io/accesscerts":             true,
	"policy.flomesh.io/accesscontrols":          true,
	"policy.flomesh.io/ingressbackends":         true,
	"policy.flomesh.io/egresses":                true,
	"policy.flomesh.io/egressgateways":          true,
	"policy.flomesh.io/upstreamtrafficsettings": true,
	"access.smi-spec.io/traffictargets":         true,
	"plugin.flomesh.io/plugins":                 true,
	"plugin.flomesh.io/pluginconfigs":           true,
	"plugin.flomesh.io/pluginchains":            true,
}

// TestTakeoverStep1ValidatorRoutesToFSM: in step 1 of the takeover
// (docs/migrate-from-fsm.md: createServices=false, "FSM's Services keep
// routing to FSM's pods") the adopted ValidatingWebhookConfiguration is
// already ours, yet its Service fsm-validator is still FSM's (selector
// app: fsm-controller in FSM v1.5.1's install). Every kind it sends there
// must be one FSM's controller validates, or the write is denied
// ("unknown gvk") until step 2.
func TestTakeoverStep1ValidatorRoutesToFSM(t *testing.T) {
	// FSM's Service fsm-validator selects FSM's controller.
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "fsm-reference", "fsm-install-v1.5.1.yaml"))
	if err != nil {
		t.Fatalf("FSM's install: %v", err)
	}
	fsmSelector := ""
	for _, doc := range strings.Split(string(raw), "\n---") {
		var o map[string]any
		if yaml.Unmarshal([]byte(doc), &o) != nil || o == nil {
			continue
		}
		if o["kind"] == "Service" && o["metadata"].(map[string]any)["name"] == "fsm-validator" {
			sel, _, _ := unstructured.NestedStringMap(o, "spec", "selector")
			fsmSelector = sel["app"]
		}
	}
	if fsmSelector != "fsm-controller" {
		t.Fatalf("FSM's fsm-validator Service selects app=%q, want fsm-controller", fsmSelector)
	}

	r := mustRender(t, "fsm: {meshConfig: {create: false}, webhooks: {createServices: false}}")
	if r.Find("Service", "fsm-validator") != nil {
		t.Fatal("step 1 renders Service fsm-validator; the test assumes FSM's stays")
	}
	var unknown []string
	for _, u := range r.All() {
		if u.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		for _, h := range hooks {
			hm := h.(map[string]any)
			svc, _, _ := unstructured.NestedString(hm, "clientConfig", "service", "name")
			if svc != "fsm-validator" {
				continue
			}
			rules, _, _ := unstructured.NestedSlice(hm, "rules")
			for _, rule := range rules {
				rm := rule.(map[string]any)
				groups, _, _ := unstructured.NestedStringSlice(rm, "apiGroups")
				resources, _, _ := unstructured.NestedStringSlice(rm, "resources")
				ops, _, _ := unstructured.NestedStringSlice(rm, "operations")
				for _, g := range groups {
					for _, res := range resources {
						if !fsmValidatorKinds[g+"/"+res] {
							unknown = append(unknown, hm["name"].(string)+": "+g+"/"+res+" "+strings.Join(ops, ","))
						}
					}
				}
			}
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		t.Errorf("step 1: %s routes through FSM's Service fsm-validator (FSM's controller) kinds FSM v1.5.1's validator denies as \"unknown gvk\" until step 2:\n  %s",
			"the adopted fsm-validator-mesh-fsm", strings.Join(unknown, "\n  "))
	}
}
