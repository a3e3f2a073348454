package webhooks

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strconv"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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

// Registration says which API object carries a webhook's caBundle and, for
// objects the server may create or complete, what they hold. The package
// that serves the webhook builds it (injector.Registration,
// validator.Registration, converter.Registration); this package only points
// it at the server and keeps its caBundle.
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
	// Conversion is the CRD's conversion stanza (strategy Webhook and the
	// review versions the handler speaks), written when the CRD has none
	// or an incomplete one; its client config is filled in by the server.
	Conversion *apiextv1.CustomResourceConversion
}

// Endpoint is where the apiserver reaches a webhook.
type Endpoint struct {
	// URLHost, when set, makes the apiserver call https://URLHost:Port/path.
	URLHost string
	// Otherwise it calls Service Namespace/ServiceName on Port.
	Namespace, ServiceName string
	// Port is 1-65535: Webhook.validate refuses any other before a Server
	// exists, so its int32 conversions below cannot wrap.
	Port int
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
// caBundle, as tmpl (Registration.Conversion, a Webhook stanza, checked by
// New) says. An existing webhook
// client config keeps its target (the chart may point it elsewhere) and only
// has its caBundle replaced. It reports what changed, for the event, or ""
// when nothing did.
func SetConversion(crd *apiextv1.CustomResourceDefinition, tmpl *apiextv1.CustomResourceConversion, ep Endpoint, path string, caBundle []byte) string {
	conv := crd.Spec.Conversion
	if conv == nil || conv.Strategy != apiextv1.WebhookConverter || conv.Webhook == nil || conv.Webhook.ClientConfig == nil ||
		(conv.Webhook.ClientConfig.URL == nil && conv.Webhook.ClientConfig.Service == nil) {
		conv = tmpl.DeepCopy()
		conv.Webhook.ClientConfig = ep.ConversionClientConfig(path, caBundle)
		crd.Spec.Conversion = conv
		return "set spec.conversion to the conversion webhook"
	}
	changed := ""
	if got := conv.Webhook.ConversionReviewVersions; len(got) == 0 {
		conv.Webhook.ConversionReviewVersions = append([]string(nil), tmpl.Webhook.ConversionReviewVersions...)
		changed = "set conversionReviewVersions"
	} else if want := tmpl.Webhook.ConversionReviewVersions; len(want) > 0 && got[0] != want[0] {
		// The apiserver sends the first version it knows, and the
		// converter answers the template's only: the others stay listed
		// after them, as whoever wrote them may rely on the list.
		rest := slices.DeleteFunc(slices.Clone(got), func(v string) bool { return slices.Contains(want, v) })
		conv.Webhook.ConversionReviewVersions = append(slices.Clone(want), rest...)
		changed = "put " + want[0] + " first in conversionReviewVersions"
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
