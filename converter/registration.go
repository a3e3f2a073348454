package converter

import (
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// Registration is the MeshConfig CRD's conversion stanza: strategy Webhook
// at fsmnames.ConverterPath, speaking apiextensions.k8s.io/v1
// ConversionReviews (the only version Handler decodes). The chart ships the
// CRD without it; the server writes it only once a TLS handshake with its
// own listener verifies the caBundle it publishes (see the README).
func Registration() webhooks.Registration {
	return webhooks.Registration{
		Kind: webhooks.CRDConversion,
		Name: fsmnames.MeshConfigCRDName,
		Path: fsmnames.ConverterPath,
		Conversion: &apixv1.CustomResourceConversion{
			Strategy: apixv1.WebhookConverter,
			Webhook:  &apixv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}},
		},
	}
}
