package validator

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestWebhooksSelectNamespaces: which namespaces each webhook sees, with the
// labels the apiserver and users put on them.
func TestWebhooksSelectNamespaces(t *testing.T) {
	hooks := Webhooks("fsm", "fsm-system")
	if got := []string{hooks[0].Name, hooks[1].Name}; len(hooks) != 2 || !slices.Equal(got, []string{PolicyWebhookName, MeshConfigWebhookName}) {
		t.Fatalf("webhooks %v", got)
	}
	ns := func(name string, kv ...string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	cases := []struct {
		name                 string
		labels               labels.Set
		policies, meshConfig bool
	}{
		{"monitored", ns("apps", fsmnames.MonitoredByLabel, "fsm"), true, false},
		{"unmonitored", ns("apps"), false, false},
		{"monitored by another mesh", ns("apps", fsmnames.MonitoredByLabel, "blue"), false, false},
		{"monitored and ignored", ns("apps", fsmnames.MonitoredByLabel, "fsm", fsmnames.IgnoreLabel, "true"), false, false},
		{"monitored and ignored with an empty value", ns("apps", fsmnames.MonitoredByLabel, "fsm", fsmnames.IgnoreLabel, ""), false, false},
		{"monitored control plane", ns("apps", fsmnames.MonitoredByLabel, "fsm", fsmnames.ControlPlaneLabel, "x"), false, false},
		{"fsm namespace", ns("fsm-system"), false, true},
		{"fsm namespace even if labelled monitored", ns("fsm-system", fsmnames.MonitoredByLabel, "fsm"), false, true},
		{"fsm namespace labelled ignore", ns("fsm-system", fsmnames.IgnoreLabel, "true"), false, true},
		// FSM's own selector read label "name": it must not matter.
		{"labelled name=fsm-system", ns("apps", fsmnames.MonitoredByLabel, "fsm", "name", "fsm-system"), true, false},
		{"another mesh's fsm namespace", ns("blue-system"), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, want := range []bool{c.policies, c.meshConfig} {
				sel, err := metav1.LabelSelectorAsSelector(hooks[i].NamespaceSelector)
				if err != nil {
					t.Fatal(err)
				}
				if got := sel.Matches(c.labels); got != want {
					t.Errorf("%s selects namespace %v = %v, want %v", hooks[i].Name, c.labels, got, want)
				}
			}
		})
	}
}

// TestWebhooksPartitionRules: the two webhooks together route exactly
// Rules(), MeshConfig (with DELETE) to its own webhook only.
func TestWebhooksPartitionRules(t *testing.T) {
	hooks := Webhooks("fsm", "fsm-system")
	var union []admissionregistrationv1.RuleWithOperations
	for _, h := range hooks {
		for _, r := range h.Rules {
			meshConfigRule := slices.Contains(r.Resources, "meshconfigs")
			if meshConfigRule != (h.Name == MeshConfigWebhookName) {
				t.Errorf("%s routes %v", h.Name, r.Resources)
			}
			if meshConfigRule && !slices.Contains(r.Operations, admissionregistrationv1.Delete) {
				t.Errorf("MeshConfig DELETE not routed: %v", r.Operations)
			}
			if r.Scope == nil {
				t.Errorf("%s rule %v has no scope", h.Name, r.Resources)
			}
		}
		union = append(union, h.Rules...)
	}
	sortRules := func(rs []admissionregistrationv1.RuleWithOperations) {
		slices.SortFunc(rs, func(a, b admissionregistrationv1.RuleWithOperations) int {
			return strings.Compare(a.APIGroups[0]+a.Resources[0], b.APIGroups[0]+b.Resources[0])
		})
	}
	rules := Rules()
	sortRules(union)
	sortRules(rules)
	if !reflect.DeepEqual(union, rules) {
		t.Errorf("webhooks route %+v, Rules() is %+v", union, rules)
	}
	// Each call returns fresh values.
	hooks[0].Rules[0].Resources[0] = "changed"
	hooks[0].NamespaceSelector.MatchExpressions[1].Values[0] = "changed"
	*hooks[1].Rules[0].Scope = admissionregistrationv1.ClusterScope
	if !reflect.DeepEqual(Webhooks("fsm", "fsm-system")[0].Rules, policyRules()) ||
		Webhooks("fsm", "fsm-system")[0].NamespaceSelector.MatchExpressions[1].Values[0] != "fsm-system" ||
		*Webhooks("fsm", "fsm-system")[1].Rules[0].Scope != admissionregistrationv1.NamespacedScope {
		t.Error("Webhooks shares state between calls")
	}
}
