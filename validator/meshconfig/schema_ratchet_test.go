package meshconfig

import (
	"encoding/json"
	"strings"
	"testing"

	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
)

// TestRatchetedRuleHidesSchemaProblem: validate() leaves out the schema
// errors a conversion annotation brings while the annotation's own rules
// deny; when ValidateUpdate ratchets those (the stored object, from before
// the webhook, already had them), the schema errors must stand: an UPDATE
// through v1alpha1 whose crafted v1alpha3-json annotation drops
// spec.traffic.networkInterfaceExclusionList (required by the v1alpha3
// schema) is denied.
func TestRatchetedRuleHidesSchemaProblem(t *testing.T) {
	hub := edit(t, presetWithout(t), map[string]any{"traffic.outboundIPRangeInclusionList": []any{"fd00::/8"}})
	if r := Validate(V1alpha3, hub); len(r.Errors) == 0 {
		t.Fatal("setup: the stored object should break a v1alpha3 rule")
	}
	old := readAs(t, V1alpha1, hub)
	var m map[string]any
	if err := json.Unmarshal(old, &m); err != nil {
		t.Fatal(err)
	}
	ann := m["metadata"].(map[string]any)["annotations"].(map[string]any)
	var changes []any
	if s, ok := ann[lossless.AnnotationV1Alpha3JSON].(string); ok {
		if err := json.Unmarshal([]byte(s), &changes); err != nil {
			t.Fatal(err)
		}
	}
	changes = append(changes, map[string]any{"path": []any{"spec", "traffic", "networkInterfaceExclusionList"}, "got": []any{}})
	b, _ := json.Marshal(changes)
	ann[lossless.AnnotationV1Alpha3JSON] = string(b)
	obj, _ := json.Marshal(m)

	// What the converter stores for this write fails the v1alpha3 schema
	// at the list the annotation drops, which the old object did not.
	src := NewSpoke(V1alpha1)
	if err := kjson.UnmarshalCaseSensitivePreserveInts(obj, src); err != nil {
		t.Fatal(err)
	}
	stored, err := hubJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	errs, _ := storedSchemaErrors(stored)
	if !strings.Contains(errs.ToAggregate().Error(), "spec.traffic.networkInterfaceExclusionList: Required value") {
		t.Fatalf("setup: stored schema errors %v", errs)
	}
	if oldErrs, _ := storedSchemaErrors(hub); len(oldErrs) != 0 {
		t.Fatalf("setup: the stored object passes the schema, got %v", oldErrs)
	}

	r := ValidateUpdate(V1alpha1, obj, old)
	all := strings.Join(append(messages(r.Errors), r.Warnings...), "\n")
	if !strings.Contains(all, "networkInterfaceExclusionList") {
		t.Errorf("the write stores a v1alpha3 object without the required spec.traffic.networkInterfaceExclusionList, yet: errors %q, warnings %q",
			messages(r.Errors), r.Warnings)
	}
	// Without the pre-existing rule problem, the same annotation is denied.
	cleanHub := presetWithout(t)
	cleanOld := readAs(t, V1alpha1, cleanHub)
	var cm map[string]any
	_ = json.Unmarshal(cleanOld, &cm)
	cm["metadata"].(map[string]any)["annotations"].(map[string]any)[lossless.AnnotationV1Alpha3JSON] = string(b)
	cobj, _ := json.Marshal(cm)
	if cr := ValidateUpdate(V1alpha1, cobj, cleanOld); len(cr.Errors) == 0 {
		t.Errorf("control: the same annotation on a clean object is not denied: warnings %q", cr.Warnings)
	}
}
