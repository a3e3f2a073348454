package converter_test

import (
	"bytes"
	"reflect"
	"testing"

	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestCRDStanza is the MeshConfig CRD's spec.conversion as the serving layer
// writes it from converter.Registration() (webhooks.SetConversion, what the
// server's reconciling calls): FSM's Service and path in-cluster, a URL for
// --webhook-url-host and `local`, v1 ConversionReviews only, the caBundle.
func TestCRDStanza(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\n...\n")
	reg := converter.Registration()
	for _, tc := range []struct {
		name string
		ep   webhooks.Endpoint
		want *apixv1.WebhookClientConfig
	}{
		{
			name: "in-cluster Service",
			ep:   webhooks.Endpoint{Namespace: "fsm-system", ServiceName: fsmnames.ConverterService, Port: 9443},
			want: &apixv1.WebhookClientConfig{
				Service:  &apixv1.ServiceReference{Namespace: "fsm-system", Name: "fsm-bootstrap", Port: ptr.To[int32](9443), Path: ptr.To("/convert")},
				CABundle: ca,
			},
		},
		{
			name: "URL",
			ep:   webhooks.Endpoint{URLHost: "127.0.0.1", Port: 9443},
			want: &apixv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/convert"), CABundle: ca},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// As the chart installs it: no stanza (strategy None).
			crd := &apixv1.CustomResourceDefinition{}
			if what := webhooks.SetConversion(crd, reg.Conversion, tc.ep, reg.Path, ca); what == "" {
				t.Fatal("SetConversion changed nothing on a CRD without a stanza")
			}
			got := crd.Spec.Conversion
			if got.Strategy != apixv1.WebhookConverter || got.Webhook == nil {
				t.Fatalf("spec.conversion = %+v, want strategy Webhook", got)
			}
			if !reflect.DeepEqual(got.Webhook.ConversionReviewVersions, []string{"v1"}) {
				t.Errorf("conversionReviewVersions = %q, want [v1] (the only version the handler decodes)", got.Webhook.ConversionReviewVersions)
			}
			if !reflect.DeepEqual(got.Webhook.ClientConfig, tc.want) {
				t.Errorf("clientConfig = %+v, want %+v", got.Webhook.ClientConfig, tc.want)
			}
			// Written once: the same inputs again change nothing.
			if what := webhooks.SetConversion(crd, reg.Conversion, tc.ep, reg.Path, ca); what != "" {
				t.Errorf("SetConversion on an up-to-date CRD: %q, want no change", what)
			}
			if what := webhooks.SetConversion(crd, reg.Conversion, tc.ep, reg.Path, []byte("other")); what == "" || bytes.Equal(webhooks.ConversionCABundle(crd), ca) {
				t.Errorf("a new caBundle was not written (%q)", what)
			}
		})
	}
}
