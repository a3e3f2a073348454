package injector

import (
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// WebhookName is FSM's name for the injector's entry in its
// MutatingWebhookConfiguration.
const WebhookName = "fsm-inject.k8s.io"

// webhookTimeoutSeconds is FSM's injector timeoutSeconds
// (fsm.injector.webhookTimeoutSeconds): issuing the bootstrap certificate
// and writing its Secret happen inside the request.
const webhookTimeoutSeconds = 20

// Registration is the injector's MutatingWebhookConfiguration
// (fsmnames.MutatingConfigurationName), served at fsmnames.InjectorPath:
// pods and FSM's VirtualMachines (machine.flomesh.io/v1alpha1, as FSM v1.5.1
// registers them) created in namespaces monitored by mesh, never in the fsm
// namespace nor in namespaces labelled flomesh.io/ignore or control-plane.
// The chart renders the same (test/chart checks it).
//
// failurePolicy Fail: a pod admitted without its sidecar escapes the mesh.
// sideEffects NoneOnDryRun: the bootstrap Secret is written only for real
// requests. No reinvocationPolicy (the API's Never, as FSM): the pod is
// injected once, and a later mutating webhook's changes need no second pass.
func Registration(mesh, fsmNamespace string) webhooks.Registration {
	name := fsmnames.MutatingConfigurationName(mesh)
	return webhooks.Registration{
		Kind: webhooks.MutatingConfiguration,
		Name: name,
		Path: fsmnames.InjectorPath,
		Mutating: &admv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: fsmnames.ConfigurationLabels(mesh)},
			Webhooks: []admv1.MutatingWebhook{{
				Name: WebhookName,
				Rules: []admv1.RuleWithOperations{{
					Operations: []admv1.OperationType{admv1.Create},
					Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}, {
					Operations: []admv1.OperationType{admv1.Create},
					Rule: admv1.Rule{APIGroups: []string{VirtualMachineGroup}, APIVersions: []string{VirtualMachineVersion},
						Resources: []string{VirtualMachineResource}},
				}},
				NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{fsmnames.MonitoredByLabel: mesh},
					MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: fsmnames.IgnoreLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
						{Key: fsmnames.ControlPlaneLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
						// FSM used label "name", which namespaces need not carry.
						{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{fsmNamespace}},
					},
				},
				FailurePolicy:           ptr.To(admv1.Fail),
				MatchPolicy:             ptr.To(admv1.Exact),
				SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
				TimeoutSeconds:          ptr.To[int32](webhookTimeoutSeconds),
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}
