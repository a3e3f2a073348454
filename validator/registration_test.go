package validator_test

import (
	"reflect"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func TestRegistration(t *testing.T) {
	entries := validator.Webhooks("fsm", "fsm-system")
	r := validator.Registration("fsm", "fsm-system")
	if r.Kind != webhooks.ValidatingConfiguration || r.Name != fsmnames.ValidatingConfigurationName("fsm") || r.Path != fsmnames.ValidatorPath || r.Validating.Name != r.Name {
		t.Fatalf("registration %+v", r)
	}
	if r.Validating.Labels["app.kubernetes.io/instance"] != "fsm" || r.Validating.Labels["app.kubernetes.io/name"] != "flomesh.io" {
		t.Errorf("labels %v", r.Validating.Labels)
	}
	if len(r.Validating.Webhooks) != len(entries) {
		t.Fatalf("%d webhooks, want %d", len(r.Validating.Webhooks), len(entries))
	}
	for i, w := range r.Validating.Webhooks {
		// The entry's own name, rules and selectors; the same transport
		// settings for every entry.
		if w.Name != entries[i].Name || !reflect.DeepEqual(w.Rules, entries[i].Rules) ||
			!reflect.DeepEqual(w.NamespaceSelector, entries[i].NamespaceSelector) || !reflect.DeepEqual(w.ObjectSelector, entries[i].ObjectSelector) {
			t.Errorf("webhook %d is %s %+v %+v, want the entry %+v", i, w.Name, w.Rules, w.NamespaceSelector, entries[i])
		}
		if *w.FailurePolicy != admv1.Fail || *w.MatchPolicy != admv1.Exact || *w.SideEffects != admv1.SideEffectClassNoneOnDryRun ||
			*w.TimeoutSeconds != 20 || !reflect.DeepEqual(w.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("webhook %s settings %+v", w.Name, w)
		}
	}
	// Each call hands out its own objects: mutating one must not leak into
	// the next registration.
	r.Validating.Webhooks[0].Rules[0].Resources[0] = "changed"
	r.Validating.Webhooks[1].NamespaceSelector.MatchExpressions[0].Values[0] = "changed"
	if again := validator.Registration("fsm", "fsm-system"); !reflect.DeepEqual(again.Validating.Webhooks[0].Rules, entries[0].Rules) ||
		!reflect.DeepEqual(again.Validating.Webhooks[1].NamespaceSelector, entries[1].NamespaceSelector) {
		t.Error("Registration shares state between calls")
	}
}
