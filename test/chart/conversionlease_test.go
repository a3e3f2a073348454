package chart_test

import (
	"slices"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestConversionLeaseRBAC: the servers may take and renew exactly the Lease
// the converter campaigns for (webhooks.ConversionLeaseName of the MeshConfig
// CRD) in the namespace it uses, under a Role named per mesh so two meshes'
// releases do not collide.
func TestConversionLeaseRBAC(t *testing.T) {
	r := mustRender(t, "fsm:\n  meshName: other\n")
	role := mustFind(t, r, "Role", "fsm-webhooks-other-conversion-lease")
	if got := role.GetNamespace(); got != webhooks.DefaultConversionLeaseNamespace {
		t.Errorf("Role namespace %q, want %q", got, webhooks.DefaultConversionLeaseNamespace)
	}
	want := webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)
	var named bool
	for _, ru := range nested(t, role, "rules").([]any) {
		rule := ru.(map[string]any)
		verbs, _ := rule["verbs"].([]any)
		names, _ := rule["resourceNames"].([]any)
		if slices.Contains(verbs, any("update")) {
			named = slices.Equal(names, []any{want}) && slices.Contains(verbs, any("get"))
		}
	}
	if !named {
		t.Errorf("Role %s does not grant get/update on Lease %q only: %v", role.GetName(), want, nested(t, role, "rules"))
	}
	binding := mustFind(t, r, "RoleBinding", "fsm-webhooks-other-conversion-lease")
	if got := nested(t, binding, "roleRef", "name"); got != role.GetName() {
		t.Errorf("RoleBinding refers to %v", got)
	}
}
