package validator

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
)

// Rules are the resources and operations the handler validates, for the
// ValidatingWebhookConfiguration: register exactly these. MeshConfig DELETE
// is routed so the mesh's own MeshConfig cannot be deleted by accident. Each
// rule's scope is its CRD's (FSM's Plugin is cluster-scoped; a Namespaced
// rule would never see one); the fsmcompat tests check them against FSM's
// CRDs.
func Rules() []admissionregistrationv1.RuleWithOperations {
	cu := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	cud := append(cu[:len(cu):len(cu)], admissionregistrationv1.Delete)
	rule := func(ops []admissionregistrationv1.OperationType, scope admissionregistrationv1.ScopeType, group string, versions []string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{group},
				APIVersions: versions,
				Resources:   resources,
				Scope:       &scope,
			},
		}
	}
	namespaced, cluster := admissionregistrationv1.NamespacedScope, admissionregistrationv1.ClusterScope
	return []admissionregistrationv1.RuleWithOperations{
		rule(cud, namespaced, meshconfig.Group, meshconfig.Versions, meshconfig.Resource),
		rule(cu, namespaced, "access.smi-spec.io", []string{"v1alpha3"}, "traffictargets"),
		rule(cu, namespaced, "policy.flomesh.io", []string{"v1alpha1"},
			"ingressbackends", "accesscontrols", "egresses", "upstreamtrafficsettings", "egressgateways", "accesscerts"),
		rule(cu, namespaced, "plugin.flomesh.io", []string{"v1alpha1"}, "pluginchains", "pluginconfigs"),
		rule(cu, cluster, "plugin.flomesh.io", []string{"v1alpha1"}, "plugins"),
	}
}

func knownKind(kind string) bool {
	switch kind {
	case meshconfig.Kind, policy.KindTrafficTarget, policy.KindIngressBackend, policy.KindAccessControl,
		policy.KindEgress, policy.KindUpstreamTrafficSetting, policy.KindEgressGateway, policy.KindAccessCert,
		policy.KindPlugin, policy.KindPluginChain, policy.KindPluginConfig:
		return true
	}
	return false
}
