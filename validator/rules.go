package validator

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
)

// Rules are the resources and operations the handler validates, for the
// ValidatingWebhookConfiguration: register exactly these. MeshConfig DELETE
// is routed so the mesh's own MeshConfig cannot be deleted by accident.
func Rules() []admissionregistrationv1.RuleWithOperations {
	cu := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	cud := append(cu[:len(cu):len(cu)], admissionregistrationv1.Delete)
	namespaced := admissionregistrationv1.NamespacedScope
	rule := func(ops []admissionregistrationv1.OperationType, group string, versions []string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{group},
				APIVersions: versions,
				Resources:   resources,
				Scope:       &namespaced,
			},
		}
	}
	return []admissionregistrationv1.RuleWithOperations{
		rule(cud, meshconfig.Group, meshconfig.Versions, meshconfig.Resource),
		rule(cu, "access.smi-spec.io", []string{"v1alpha3"}, "traffictargets"),
		rule(cu, "policy.flomesh.io", []string{"v1alpha1"},
			"ingressbackends", "accesscontrols", "egresses", "upstreamtrafficsettings", "egressgateways", "accesscerts"),
		rule(cu, "plugin.flomesh.io", []string{"v1alpha1"}, "plugins", "pluginchains", "pluginconfigs"),
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
