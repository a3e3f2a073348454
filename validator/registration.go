package validator

import (
	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// webhookTimeoutSeconds bounds each validation call. FSM's validator sets
// none (the API default, 10 s); ours reads the MeshConfig and policies from
// a cache and takes the injector's 20 s, so one figure holds for the suite.
const webhookTimeoutSeconds = 20

// Registration is the validator's ValidatingWebhookConfiguration
// (fsmnames.ValidatingConfigurationName): one entry per element of Webhooks
// (names, rules and namespaceSelectors, exactly what the handler
// validates), each with the same transport settings. Every entry calls the
// same server at fsmnames.ValidatorPath, so the caBundle, its repair and
// readiness are the configuration's, whatever the number of entries. The
// chart renders the same (test/chart checks it).
//
// failurePolicy Fail: a bad MeshConfig or policy admitted while the
// validator is down would reach the mesh unchecked. sideEffects
// NoneOnDryRun: validation writes nothing.
func Registration(mesh, fsmNamespace string) webhooks.Registration {
	entries := Webhooks(mesh, fsmNamespace)
	for i := range entries {
		e := &entries[i]
		e.FailurePolicy = ptr.To(admv1.Fail)
		e.MatchPolicy = ptr.To(admv1.Exact)
		e.SideEffects = ptr.To(admv1.SideEffectClassNoneOnDryRun)
		e.TimeoutSeconds = ptr.To[int32](webhookTimeoutSeconds)
		e.AdmissionReviewVersions = []string{"v1"}
	}
	name := fsmnames.ValidatingConfigurationName(mesh)
	return webhooks.Registration{
		Kind: webhooks.ValidatingConfiguration,
		Name: name,
		Path: fsmnames.ValidatorPath,
		Validating: &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: fsmnames.ConfigurationLabels(mesh)},
			Webhooks:   entries,
		},
	}
}
