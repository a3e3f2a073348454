package webhooks

import (
	"bytes"
	"fmt"
	"net"
	"strconv"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Kind is what a webhook registers itself with.
type Kind int

const (
	// MutatingConfiguration is a MutatingWebhookConfiguration.
	MutatingConfiguration Kind = iota + 1
	// ValidatingConfiguration is a ValidatingWebhookConfiguration.
	ValidatingConfiguration
	// CRDConversion is the spec.conversion stanza of a CRD.
	CRDConversion
)

func (k Kind) String() string {
	switch k {
	case MutatingConfiguration:
		return "MutatingWebhookConfiguration"
	case ValidatingConfiguration:
		return "ValidatingWebhookConfiguration"
	case CRDConversion:
		return "CustomResourceDefinition"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Registration says which API object carries a webhook's caBundle.
type Registration struct {
	Kind Kind
	// Name of the configuration or the CRD.
	Name string
	// Path the apiserver calls (also registered on the server).
	Path string
	// Mutating / Validating are the configurations to create when the
	// server registers itself (URL mode); their client configs are filled
	// in by the server. An existing configuration only has its caBundle
	// patched.
	Mutating   *admv1.MutatingWebhookConfiguration
	Validating *admv1.ValidatingWebhookConfiguration
}

// Object names and paths (FSM names).
const (
	InjectorWebhookName = "fsm-inject.k8s.io"
	InjectorPath        = "/mutate-pod-creation"
	ValidatorPath       = "/validate"
	ConverterPath       = "/convert"
	MeshConfigCRDName   = "meshconfigs.config.flomesh.io"
	// webhookTimeoutSeconds is FSM's injector timeoutSeconds; FSM's validator
	// sets none (the API default, 10 s). One value for all of ours.
	webhookTimeoutSeconds = 20
)

// MutatingConfigurationName is FSM's injector configuration name.
func MutatingConfigurationName(mesh string) string { return "fsm-webhook-" + mesh }

// ValidatingConfigurationName is FSM's validator configuration name.
func ValidatingConfigurationName(mesh string) string { return "fsm-validator-mesh-" + mesh }

func meshLabels(mesh string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh}
}

// InjectorRegistration is the sidecar injector's MutatingWebhookConfiguration:
// pods created in namespaces monitored by mesh, never the fsm namespace, nor
// namespaces labelled flomesh.io/ignore or control-plane.
func InjectorRegistration(mesh, fsmNamespace string) Registration {
	sideEffects := admv1.SideEffectClassNoneOnDryRun
	return Registration{
		Kind: MutatingConfiguration,
		Name: MutatingConfigurationName(mesh),
		Path: InjectorPath,
		Mutating: &admv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: MutatingConfigurationName(mesh), Labels: meshLabels(mesh)},
			Webhooks: []admv1.MutatingWebhook{{
				Name: InjectorWebhookName,
				Rules: []admv1.RuleWithOperations{{
					Operations: []admv1.OperationType{admv1.Create},
					Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
				NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"flomesh.io/monitored-by": mesh},
					MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "flomesh.io/ignore", Operator: metav1.LabelSelectorOpDoesNotExist},
						{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
						// FSM used label "name", which namespaces need not carry.
						{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fsmNamespace}},
					},
				},
				FailurePolicy:           ptr.To(admv1.Fail),
				MatchPolicy:             ptr.To(admv1.Exact),
				SideEffects:             &sideEffects,
				TimeoutSeconds:          ptr.To[int32](webhookTimeoutSeconds),
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}

// ValidatorRegistration is the validator's ValidatingWebhookConfiguration:
// one entry per element of entries (validator.Webhooks(): names, rules and
// namespaceSelectors, exactly what the handler validates), each given the
// same transport settings. Every entry calls the same server at
// ValidatorPath, so the caBundle, its repair and readiness are the
// configuration's, whatever the number of entries.
func ValidatorRegistration(mesh string, entries []admv1.ValidatingWebhook) Registration {
	sideEffects := admv1.SideEffectClassNoneOnDryRun
	hooks := make([]admv1.ValidatingWebhook, 0, len(entries))
	for _, e := range entries {
		hooks = append(hooks, admv1.ValidatingWebhook{
			Name:                    e.Name,
			Rules:                   deepCopyRules(e.Rules),
			NamespaceSelector:       e.NamespaceSelector.DeepCopy(),
			ObjectSelector:          e.ObjectSelector.DeepCopy(),
			FailurePolicy:           ptr.To(admv1.Fail),
			MatchPolicy:             ptr.To(admv1.Exact),
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr.To[int32](webhookTimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
		})
	}
	return Registration{
		Kind: ValidatingConfiguration,
		Name: ValidatingConfigurationName(mesh),
		Path: ValidatorPath,
		Validating: &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: ValidatingConfigurationName(mesh), Labels: meshLabels(mesh)},
			Webhooks:   hooks,
		},
	}
}

func deepCopyRules(rules []admv1.RuleWithOperations) []admv1.RuleWithOperations {
	out := make([]admv1.RuleWithOperations, 0, len(rules))
	for _, r := range rules {
		out = append(out, *r.DeepCopy())
	}
	return out
}

// ConverterRegistration is the MeshConfig CRD's conversion webhook.
func ConverterRegistration() Registration {
	return Registration{Kind: CRDConversion, Name: MeshConfigCRDName, Path: ConverterPath}
}

// Endpoint is where the apiserver reaches a webhook.
type Endpoint struct {
	// URLHost, when set, makes the apiserver call https://URLHost:Port/path.
	URLHost string
	// Otherwise it calls Service Namespace/ServiceName on Port.
	Namespace, ServiceName string
	Port                   int
}

func (e Endpoint) url(path string) string {
	return "https://" + net.JoinHostPort(e.URLHost, strconv.Itoa(e.Port)) + path
}

// AdmissionClientConfig is the client config for an admission webhook.
func (e Endpoint) AdmissionClientConfig(path string, caBundle []byte) admv1.WebhookClientConfig {
	if e.URLHost != "" {
		return admv1.WebhookClientConfig{URL: ptr.To(e.url(path)), CABundle: caBundle}
	}
	return admv1.WebhookClientConfig{
		Service:  &admv1.ServiceReference{Namespace: e.Namespace, Name: e.ServiceName, Path: ptr.To(path), Port: ptr.To(int32(e.Port))},
		CABundle: caBundle,
	}
}

// ConversionClientConfig is the client config for a conversion webhook.
func (e Endpoint) ConversionClientConfig(path string, caBundle []byte) *apiextv1.WebhookClientConfig {
	if e.URLHost != "" {
		return &apiextv1.WebhookClientConfig{URL: ptr.To(e.url(path)), CABundle: caBundle}
	}
	return &apiextv1.WebhookClientConfig{
		Service:  &apiextv1.ServiceReference{Namespace: e.Namespace, Name: e.ServiceName, Path: ptr.To(path), Port: ptr.To(int32(e.Port))},
		CABundle: caBundle,
	}
}

// NewMutating returns the configuration to create: the template with every
// webhook pointed at ep and trusting caBundle.
func NewMutating(tmpl *admv1.MutatingWebhookConfiguration, ep Endpoint, path string, caBundle []byte) *admv1.MutatingWebhookConfiguration {
	out := tmpl.DeepCopy()
	for i := range out.Webhooks {
		out.Webhooks[i].ClientConfig = ep.AdmissionClientConfig(path, caBundle)
	}
	return out
}

// NewValidating is NewMutating for a ValidatingWebhookConfiguration.
func NewValidating(tmpl *admv1.ValidatingWebhookConfiguration, ep Endpoint, path string, caBundle []byte) *admv1.ValidatingWebhookConfiguration {
	out := tmpl.DeepCopy()
	for i := range out.Webhooks {
		out.Webhooks[i].ClientConfig = ep.AdmissionClientConfig(path, caBundle)
	}
	return out
}

// SetMutatingCABundle sets caBundle on every webhook of cfg and reports the
// previous value of the first one that differed (nil, false when none did).
func SetMutatingCABundle(cfg *admv1.MutatingWebhookConfiguration, caBundle []byte) (old []byte, changed bool) {
	for i := range cfg.Webhooks {
		if cc := &cfg.Webhooks[i].ClientConfig; !bytes.Equal(cc.CABundle, caBundle) {
			if !changed {
				old, changed = cc.CABundle, true
			}
			cc.CABundle = caBundle
		}
	}
	return old, changed
}

// SetValidatingCABundle is SetMutatingCABundle for a validating configuration.
func SetValidatingCABundle(cfg *admv1.ValidatingWebhookConfiguration, caBundle []byte) (old []byte, changed bool) {
	for i := range cfg.Webhooks {
		if cc := &cfg.Webhooks[i].ClientConfig; !bytes.Equal(cc.CABundle, caBundle) {
			if !changed {
				old, changed = cc.CABundle, true
			}
			cc.CABundle = caBundle
		}
	}
	return old, changed
}

// SetConversion makes crd convert through the webhook at ep/path trusting
// caBundle. An existing webhook client config keeps its target (the chart
// may point it elsewhere) and only has its caBundle replaced. It reports
// what changed, for the event, or "" when nothing did.
func SetConversion(crd *apiextv1.CustomResourceDefinition, ep Endpoint, path string, caBundle []byte) string {
	conv := crd.Spec.Conversion
	if conv == nil || conv.Strategy != apiextv1.WebhookConverter || conv.Webhook == nil || conv.Webhook.ClientConfig == nil ||
		(conv.Webhook.ClientConfig.URL == nil && conv.Webhook.ClientConfig.Service == nil) {
		crd.Spec.Conversion = &apiextv1.CustomResourceConversion{
			Strategy: apiextv1.WebhookConverter,
			Webhook: &apiextv1.WebhookConversion{
				ClientConfig:             ep.ConversionClientConfig(path, caBundle),
				ConversionReviewVersions: []string{"v1"},
			},
		}
		return "set spec.conversion to the conversion webhook"
	}
	changed := ""
	if len(conv.Webhook.ConversionReviewVersions) == 0 {
		conv.Webhook.ConversionReviewVersions = []string{"v1"}
		changed = "set conversionReviewVersions"
	}
	if !bytes.Equal(conv.Webhook.ClientConfig.CABundle, caBundle) {
		conv.Webhook.ClientConfig.CABundle = caBundle
		changed = "replaced the conversion caBundle"
	}
	return changed
}

// ConversionCABundle returns crd's conversion caBundle, or nil.
func ConversionCABundle(crd *apiextv1.CustomResourceDefinition) []byte {
	if c := crd.Spec.Conversion; c != nil && c.Webhook != nil && c.Webhook.ClientConfig != nil {
		return c.Webhook.ClientConfig.CABundle
	}
	return nil
}
