package injector_test

import (
	"reflect"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func TestRegistration(t *testing.T) {
	r := injector.Registration("fsm", "fsm-system")
	if r.Kind != webhooks.MutatingConfiguration || r.Name != fsmnames.MutatingConfigurationName("fsm") || r.Path != fsmnames.InjectorPath || r.Mutating.Name != r.Name {
		t.Fatalf("registration %+v", r)
	}
	if len(r.Mutating.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(r.Mutating.Webhooks))
	}
	w := r.Mutating.Webhooks[0]
	if w.Name != "fsm-inject.k8s.io" || *w.FailurePolicy != admv1.Fail || *w.MatchPolicy != admv1.Exact ||
		*w.SideEffects != admv1.SideEffectClassNoneOnDryRun || *w.TimeoutSeconds != 20 || w.AdmissionReviewVersions[0] != "v1" ||
		w.ReinvocationPolicy != nil {
		t.Errorf("webhook %+v", w)
	}
	// Pods, and FSM's VirtualMachines as FSM v1.5.1 routes them (CREATE,
	// machine.flomesh.io/v1alpha1 virtualmachines).
	create := []admv1.OperationType{admv1.Create}
	wantRules := []admv1.RuleWithOperations{
		{Operations: create, Rule: admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
		{Operations: create, Rule: admv1.Rule{APIGroups: []string{"machine.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"virtualmachines"}}},
	}
	if !reflect.DeepEqual(w.Rules, wantRules) {
		t.Errorf("rules %+v, want %+v", w.Rules, wantRules)
	}
	sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"monitored", map[string]string{fsmnames.MonitoredByLabel: "fsm", "kubernetes.io/metadata.name": "app"}, true},
		{"other mesh", map[string]string{fsmnames.MonitoredByLabel: "other", "kubernetes.io/metadata.name": "app"}, false},
		{"unmonitored", map[string]string{"kubernetes.io/metadata.name": "app"}, false},
		{"fsm namespace", map[string]string{fsmnames.MonitoredByLabel: "fsm", "kubernetes.io/metadata.name": "fsm-system"}, false},
		{"ignored", map[string]string{fsmnames.MonitoredByLabel: "fsm", "kubernetes.io/metadata.name": "app", fsmnames.IgnoreLabel: "true"}, false},
		{"control plane", map[string]string{fsmnames.MonitoredByLabel: "fsm", "kubernetes.io/metadata.name": "app", fsmnames.ControlPlaneLabel: "x"}, false},
	}
	for _, c := range cases {
		if got := sel.Matches(labels.Set(c.labels)); got != c.want {
			t.Errorf("%s namespace %v selected = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if r.Mutating.Labels["app.kubernetes.io/instance"] != "fsm" || r.Mutating.Labels["app.kubernetes.io/name"] != "flomesh.io" {
		t.Errorf("labels %v", r.Mutating.Labels)
	}
	// Each call hands out its own objects.
	r.Mutating.Webhooks[0].NamespaceSelector.MatchLabels[fsmnames.MonitoredByLabel] = "changed"
	r.Mutating.Labels["app.kubernetes.io/instance"] = "changed"
	if again := injector.Registration("fsm", "fsm-system"); again.Mutating.Webhooks[0].NamespaceSelector.MatchLabels[fsmnames.MonitoredByLabel] != "fsm" ||
		again.Mutating.Labels["app.kubernetes.io/instance"] != "fsm" {
		t.Error("Registration shares state between calls")
	}
}
