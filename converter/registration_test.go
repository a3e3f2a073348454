package converter_test

import (
	"reflect"
	"testing"

	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func TestRegistration(t *testing.T) {
	r := converter.Registration()
	if r.Kind != webhooks.CRDConversion || r.Name != fsmnames.MeshConfigCRDName || r.Path != fsmnames.ConverterPath {
		t.Fatalf("registration %+v", r)
	}
	// The stanza the server completes: strategy Webhook, and only the review
	// version the handler decodes; the client config is the server's.
	want := &apixv1.CustomResourceConversion{Strategy: apixv1.WebhookConverter, Webhook: &apixv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}}}
	if !reflect.DeepEqual(r.Conversion, want) {
		t.Errorf("conversion %+v, want %+v", r.Conversion, want)
	}
	r.Conversion.Webhook.ConversionReviewVersions[0] = "changed"
	if !reflect.DeepEqual(converter.Registration().Conversion, want) {
		t.Error("Registration shares state between calls")
	}
}
