package validator

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// Names of the validator's two entries in its ValidatingWebhookConfiguration.
const (
	// PolicyWebhookName is FSM's name for its validating webhook: the policy
	// kinds, in the namespaces FSM validated.
	PolicyWebhookName = "fsm-validator.k8s.io"
	// MeshConfigWebhookName validates the mesh's MeshConfig (FSM has no
	// MeshConfig validation).
	MeshConfigWebhookName = "meshconfig-validator.flomesh.io"
)

// NamespaceDeleters are the identities the namespace controller deletes a
// namespace's objects with: its ServiceAccount (kube-controller-manager
// with --use-service-account-credentials, as kubeadm runs it) or the
// controller-manager's own user (without).
var NamespaceDeleters = []string{
	"system:serviceaccount:kube-system:namespace-controller",
	"system:kube-controller-manager",
}

// NotNamespaceDeletion is the MeshConfig webhook's matchCondition: a DELETE
// by a NamespaceDeleters identity is not sent to the validator. The
// namespace controller deletes a MeshConfig only while its namespace is
// terminating, which the handler allows anyway (meshConfigDelete); but by
// then the controller may already have deleted the validator's pods, and a
// call nobody answers is refused (failurePolicy Fail), which leaves the fsm
// namespace Terminating forever. A CEL expression, identical in the chart.
func NotNamespaceDeletion() admissionregistrationv1.MatchCondition {
	quoted := make([]string, len(NamespaceDeleters))
	for i, u := range NamespaceDeleters {
		quoted[i] = "'" + u + "'"
	}
	return admissionregistrationv1.MatchCondition{
		Name:       "not-namespace-deletion",
		Expression: "request.operation != 'DELETE' || !(request.userInfo.username in [" + strings.Join(quoted, ", ") + "])",
	}
}

// Webhooks are the validator's entries in its ValidatingWebhookConfiguration,
// both served at /validate: name, rules and namespaceSelector, which decide
// what the apiserver sends here (Registration adds the transport settings;
// the chart renders the same). Each call returns fresh values.
//
//   - PolicyWebhookName: the policy kinds in FSM v1.5.1's namespaces, so a
//     policy FSM never validated (unmonitored, flomesh.io/ignore,
//     control-plane or the fsm namespace) is not refused after the switch.
//     FSM's selector, except that the fsm namespace is excluded by
//     kubernetes.io/metadata.name, which the apiserver sets on every
//     namespace, instead of FSM's `name`, which nothing sets. A
//     namespaceSelector never skips a cluster-scoped object: every Plugin
//     is validated, as in FSM.
//   - MeshConfigWebhookName: MeshConfig CREATE/UPDATE/DELETE in the fsm
//     namespace only, which holds the one MeshConfig this mesh reads (the
//     fsm namespace is never monitored, so the policy webhook's selector
//     cannot serve here). A MeshConfig elsewhere is read by no component of
//     this mesh; another mesh's is validated by that mesh's validator.
//     DELETE by the namespace controller is not sent (NotNamespaceDeletion).
func Webhooks(mesh, fsmNamespace string) []admissionregistrationv1.ValidatingWebhook {
	return []admissionregistrationv1.ValidatingWebhook{{
		Name:  PolicyWebhookName,
		Rules: policyRules(),
		NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{fsmnames.MonitoredByLabel: mesh},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: fsmnames.IgnoreLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{fsmNamespace}},
				{Key: fsmnames.ControlPlaneLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
			},
		},
	}, {
		Name:  MeshConfigWebhookName,
		Rules: meshConfigRules(),
		NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{fsmNamespace}},
			},
		},
		MatchConditions: []admissionregistrationv1.MatchCondition{NotNamespaceDeletion()},
	}}
}

// Rules are every resource and operation the handler validates: the rules of
// all Webhooks. MeshConfig DELETE is routed so the mesh's own MeshConfig
// cannot be deleted by accident. Each rule's scope is its CRD's (FSM's
// Plugin is cluster-scoped; a Namespaced rule would never see one); the
// fsmcompat tests check them against FSM's CRDs.
func Rules() []admissionregistrationv1.RuleWithOperations {
	return append(meshConfigRules(), policyRules()...)
}

var (
	createUpdate = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	namespaced   = admissionregistrationv1.NamespacedScope
	cluster      = admissionregistrationv1.ClusterScope
)

func rule(ops []admissionregistrationv1.OperationType, scope admissionregistrationv1.ScopeType, group string, versions []string, resources ...string) admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: append([]admissionregistrationv1.OperationType(nil), ops...),
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{group},
			APIVersions: append([]string(nil), versions...),
			Resources:   resources,
			Scope:       &scope,
		},
	}
}

func meshConfigRules() []admissionregistrationv1.RuleWithOperations {
	cud := append(createUpdate[:len(createUpdate):len(createUpdate)], admissionregistrationv1.Delete)
	return []admissionregistrationv1.RuleWithOperations{
		rule(cud, namespaced, meshconfig.Group, meshconfig.Versions, meshconfig.Resource),
	}
}

func policyRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{
		rule(createUpdate, namespaced, "access.smi-spec.io", []string{"v1alpha3"}, "traffictargets"),
		rule(createUpdate, namespaced, "policy.flomesh.io", []string{"v1alpha1"},
			"ingressbackends", "accesscontrols", "egresses", "upstreamtrafficsettings", "egressgateways", "accesscerts"),
		rule(createUpdate, namespaced, "plugin.flomesh.io", []string{"v1alpha1"}, "pluginchains", "pluginconfigs"),
		rule(createUpdate, cluster, "plugin.flomesh.io", []string{"v1alpha1"}, "plugins"),
	}
}
