package webhooks

import (
	"crypto/x509"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestConversionComplete: a CRD's stanza is complete, and left alone, only
// when the apiserver would send v1 ConversionReviews to a webhook target.
func TestConversionComplete(t *testing.T) {
	target := &apiextv1.WebhookClientConfig{URL: ptr.To("https://conv:1/convert")}
	stanza := func(strategy apiextv1.ConversionStrategyType, cc *apiextv1.WebhookClientConfig, versions ...string) *apiextv1.CustomResourceConversion {
		return &apiextv1.CustomResourceConversion{Strategy: strategy, Webhook: &apiextv1.WebhookConversion{ClientConfig: cc, ConversionReviewVersions: versions}}
	}
	for _, c := range []struct {
		name string
		conv *apiextv1.CustomResourceConversion
		want bool
	}{
		{"webhook, v1 first", stanza(apiextv1.WebhookConverter, target, "v1", "v1beta1"), true},
		{"service target", stanza(apiextv1.WebhookConverter, &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Name: "conv"}}, "v1"), true},
		{"none", nil, false},
		{"strategy None", stanza(apiextv1.NoneConverter, target, "v1"), false},
		{"no target", stanza(apiextv1.WebhookConverter, &apiextv1.WebhookClientConfig{}, "v1"), false},
		{"no review versions", stanza(apiextv1.WebhookConverter, target), false},
		{"v1beta1 first", stanza(apiextv1.WebhookConverter, target, "v1beta1", "v1"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			crd := &apiextv1.CustomResourceDefinition{Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: c.conv}}
			if got := conversionComplete(crd); got != c.want {
				t.Errorf("conversionComplete = %t, want %t", got, c.want)
			}
		})
	}
}

// TestRegistrationCABundle: what the caBundle of each kind of registration
// object is read as, and which objects have no webhook to trust anything.
func TestRegistrationCABundle(t *testing.T) {
	mutating := func(bundles ...string) *admv1.MutatingWebhookConfiguration {
		cfg := &admv1.MutatingWebhookConfiguration{Webhooks: []admv1.MutatingWebhook{}}
		for _, b := range bundles {
			cfg.Webhooks = append(cfg.Webhooks, admv1.MutatingWebhook{Name: "m" + b, ClientConfig: admv1.WebhookClientConfig{CABundle: []byte(b)}})
		}
		return cfg
	}
	noneCRD := &apiextv1.CustomResourceDefinition{Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}}}
	for _, c := range []struct {
		name       string
		obj        any
		wantBundle string
		wantSplit  string
		wantEmpty  bool
	}{
		{"mutating, entries agree", mutating("a", "a"), "a", "", false},
		{"mutating, entries disagree", mutating("a", "b"), "", "webhooks ma and mb carry different caBundles", false},
		{"mutating, no webhooks", mutating(), "", "", true},
		{"validating, no webhooks", &admv1.ValidatingWebhookConfiguration{Webhooks: []admv1.ValidatingWebhook{}}, "", "", true},
		{"CRD without a conversion webhook", noneCRD, "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, split := sharedCABundle(c.obj)
			if string(b) != c.wantBundle || split != c.wantSplit {
				t.Errorf("sharedCABundle = %q, %q; want %q, %q", b, split, c.wantBundle, c.wantSplit)
			}
			if got := noWebhooks(c.obj); got != c.wantEmpty {
				t.Errorf("noWebhooks = %t, want %t", got, c.wantEmpty)
			}
		})
	}
}

// TestDesiredBundle: the caBundle published is the union of the mesh's
// trust, the roots kept after a replacement, the served cert's root and the
// stored cert's root (the phases of a root rotation each add one of them);
// a stored ca.crt that does not parse (edited by hand) is left out, not a
// reason to publish nothing.
func TestDesiredBundle(t *testing.T) {
	now := time.Now()
	ca := func() *x509.Certificate {
		return certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour}).Active()
	}
	trusted, kept, served, stored := ca(), ca(), ca(), ca()
	pem := func(c *x509.Certificate) []byte { return certs.EncodeCertsPEM(c) }
	secret := func(caCrt []byte) *corev1.Secret {
		return &corev1.Secret{Data: map[string][]byte{servingcert.KeyCA: caCrt}}
	}
	for _, c := range []struct {
		name   string
		kept   []byte
		served *servingcert.Loaded
		sec    *corev1.Secret
		want   []*x509.Certificate
	}{
		{"every source", pem(kept), &servingcert.Loaded{CA: pem(served)}, secret(pem(stored)), []*x509.Certificate{trusted, kept, served, stored}},
		{"trust alone", nil, nil, nil, []*x509.Certificate{trusted}},
		{"stored ca.crt unparsable", nil, &servingcert.Loaded{CA: pem(served)}, secret([]byte("junk")), []*x509.Certificate{trusted, served}},
		{"stored ca.crt empty", nil, nil, secret(nil), []*x509.Certificate{trusted}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := (&hook{}).desiredBundle(now, pem(trusted), c.served, c.sec, c.kept)
			if err != nil {
				t.Fatal(err)
			}
			got, err := certs.ParseCertsPEM(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Errorf("caBundle holds %d root(s), want %d", len(got), len(c.want))
			}
			for _, w := range c.want {
				if !holds(got, w) {
					t.Errorf("caBundle lacks %s", w.Subject.CommonName)
				}
			}
		})
	}
}
