package webhooks

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// testValidatorWebhooks stand for a validating configuration's entries
// (webhooks serves whatever registration it is handed): two entries with
// their own rules and selectors, calling one server.
func testValidatorWebhooks() []admv1.ValidatingWebhook {
	return []admv1.ValidatingWebhook{{
		Name: "policy.test.flomesh.io",
		Rules: []admv1.RuleWithOperations{{
			Operations: []admv1.OperationType{admv1.Create, admv1.Update},
			Rule:       admv1.Rule{APIGroups: []string{"access.smi-spec.io"}, APIVersions: []string{"v1alpha3"}, Resources: []string{"traffictargets"}},
		}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{fsmnames.MonitoredByLabel: "fsm"}},
	}, {
		Name: "meshconfig.test.flomesh.io",
		Rules: []admv1.RuleWithOperations{{
			Operations: []admv1.OperationType{admv1.Create, admv1.Update, admv1.Delete},
			Rule:       admv1.Rule{APIGroups: []string{fsmnames.ConfigGroup}, APIVersions: []string{"*"}, Resources: []string{"meshconfigs"}},
		}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"fsm-system"}},
		}},
	}}
}

// testValidatorRegistration is a configuration of the two entries.
func testValidatorRegistration() Registration {
	return Registration{
		Kind: ValidatingConfiguration,
		Name: "test-validator",
		Path: fsmnames.ValidatorPath,
		Validating: &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "test-validator"},
			Webhooks:   testValidatorWebhooks(),
		},
	}
}

func TestValidatingEntries(t *testing.T) {
	r := testValidatorRegistration()
	// Every entry calls the same server and trusts the same caBundle.
	cfg := NewValidating(r.Validating, Endpoint{Namespace: "fsm-system", ServiceName: fsmnames.ValidatorService, Port: 9093}, r.Path, []byte("ca"))
	for _, w := range cfg.Webhooks {
		if s := w.ClientConfig.Service; s == nil || s.Name != fsmnames.ValidatorService || *s.Port != 9093 || *s.Path != fsmnames.ValidatorPath || string(w.ClientConfig.CABundle) != "ca" {
			t.Errorf("webhook %s client config %+v", w.Name, w.ClientConfig)
		}
	}
	// The template is copied, not filled in.
	if r.Validating.Webhooks[0].ClientConfig.Service != nil || r.Validating.Webhooks[0].ClientConfig.CABundle != nil {
		t.Errorf("NewValidating changed its template: %+v", r.Validating.Webhooks[0].ClientConfig)
	}
	// One entry reverted by someone else is drift of the whole
	// configuration, named in status and readiness, and repaired on every
	// entry.
	cfg.Webhooks[1].ClientConfig.CABundle = []byte("other")
	if b, split := sharedCABundle(cfg); b != nil || split != "webhooks policy.test.flomesh.io and meshconfig.test.flomesh.io carry different caBundles" {
		t.Errorf("sharedCABundle of disagreeing entries = %q, %q", b, split)
	}
	if old, changed := SetValidatingCABundle(cfg, []byte("ca")); !changed || string(old) != "other" {
		t.Errorf("SetValidatingCABundle: changed %v, old %q", changed, old)
	}
	if b, split := sharedCABundle(cfg); string(b) != "ca" || split != "" {
		t.Errorf("after repair: %q, %q", b, split)
	}
}

func TestClientConfigs(t *testing.T) {
	svc := Endpoint{Namespace: "fsm-system", ServiceName: fsmnames.InjectorService, Port: 9090}
	cc := svc.AdmissionClientConfig(fsmnames.InjectorPath, []byte("ca"))
	if cc.URL != nil || cc.Service.Name != fsmnames.InjectorService || *cc.Service.Port != 9090 || *cc.Service.Path != fsmnames.InjectorPath || string(cc.CABundle) != "ca" {
		t.Errorf("service client config %+v", cc)
	}
	url := Endpoint{URLHost: "::1", Port: 9443}
	if c := url.ConversionClientConfig(fsmnames.ConverterPath, nil); c.Service != nil || *c.URL != "https://[::1]:9443/convert" {
		t.Errorf("url client config %+v", c)
	}
	// The CRD's stanza names the converter's own Service, port and path:
	// the apiserver's conversion calls go nowhere else.
	conv := Endpoint{Namespace: "fsm-system", ServiceName: fsmnames.ConverterService, Port: 9443}
	c := conv.ConversionClientConfig(fsmnames.ConverterPath, []byte("ca"))
	if c.URL != nil || c.Service == nil || c.Service.Namespace != "fsm-system" || c.Service.Name != fsmnames.ConverterService ||
		*c.Service.Port != 9443 || *c.Service.Path != fsmnames.ConverterPath || string(c.CABundle) != "ca" {
		t.Errorf("conversion service client config %+v", c)
	}
}

func TestSetCABundle(t *testing.T) {
	tmpl := &admv1.MutatingWebhookConfiguration{Webhooks: []admv1.MutatingWebhook{{Name: "inject.test.flomesh.io"}}}
	cfg := NewMutating(tmpl, Endpoint{URLHost: "127.0.0.1", Port: 1}, "/p", []byte("old"))
	cfg.Webhooks = append(cfg.Webhooks, *cfg.Webhooks[0].DeepCopy())
	cfg.Webhooks[1].ClientConfig.CABundle = []byte("other")
	old, changed := SetMutatingCABundle(cfg, []byte("new"))
	if !changed || string(old) != "old" {
		t.Errorf("changed %v old %q", changed, old)
	}
	for _, w := range cfg.Webhooks {
		if string(w.ClientConfig.CABundle) != "new" {
			t.Errorf("webhook %s caBundle %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	if _, changed := SetMutatingCABundle(cfg, []byte("new")); changed {
		t.Error("unchanged caBundle reported as changed")
	}
	if b := caBundleOf(cfg); string(b) != "new" {
		t.Errorf("caBundleOf agreeing entries = %q, want %q", b, "new")
	}
	// A configuration whose entries disagree counts as drifted.
	cfg.Webhooks[1].ClientConfig.CABundle = []byte("x")
	if caBundleOf(cfg) != nil {
		t.Error("disagreeing entries not reported as drift")
	}
}

// TestSetValidatingCABundle: the previous value reported (for the event and
// the repair count) is the first entry's that differed, and an unchanged
// configuration is not written.
func TestSetValidatingCABundle(t *testing.T) {
	r := testValidatorRegistration()
	cfg := NewValidating(r.Validating, Endpoint{URLHost: "127.0.0.1", Port: 1}, r.Path, nil)
	cfg.Webhooks[0].ClientConfig.CABundle = []byte("first")
	cfg.Webhooks[1].ClientConfig.CABundle = []byte("second")
	if old, changed := SetValidatingCABundle(cfg, []byte("new")); !changed || string(old) != "first" {
		t.Errorf("changed %v old %q, want true %q", changed, old, "first")
	}
	if old, changed := SetValidatingCABundle(cfg, []byte("new")); changed || old != nil {
		t.Errorf("unchanged caBundle: changed %v old %q", changed, old)
	}
}

func TestSetConversion(t *testing.T) {
	ep := Endpoint{Namespace: "fsm-system", ServiceName: fsmnames.ConverterService, Port: 9443}
	tmpl := &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}}}
	cases := []struct {
		name         string
		conv         *apiextv1.CustomResourceConversion
		wantWhat     string
		wantVersions []string // nil: the template's [v1]
	}{
		{"none", nil, "set spec.conversion", nil},
		{"strategy None", &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}, "set spec.conversion", nil},
		{"webhook without target", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ClientConfig: &apiextv1.WebhookClientConfig{}}}, "set spec.conversion", nil},
		{"no review versions", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}}}, "set conversionReviewVersions", nil},
		{"stale caBundle", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("old")}, ConversionReviewVersions: []string{"v1"}}}, "replaced the conversion caBundle", nil},
		{"up to date", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}, ConversionReviewVersions: []string{"v1"}}}, "", nil},
		// The apiserver would send v1beta1 reviews, which the converter refuses.
		{"v1beta1 only", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}, ConversionReviewVersions: []string{"v1beta1"}}},
			"put v1 first in conversionReviewVersions", []string{"v1", "v1beta1"}},
		{"v1beta1 first", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}, ConversionReviewVersions: []string{"v1beta1", "v1"}}},
			"put v1 first in conversionReviewVersions", []string{"v1", "v1beta1"}},
		// Not accepted by the apiserver's validation; SetConversion still
		// makes it a webhook stanza rather than patching a None one.
		{"strategy None with a webhook stanza", &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}, ConversionReviewVersions: []string{"v1"}}},
			"set spec.conversion", nil},
		{"webhook without client config", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ConversionReviewVersions: []string{"v1"}}}, "set spec.conversion", nil},
		{"service target kept", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{Service: &apiextv1.ServiceReference{Namespace: "other", Name: "conv"}, CABundle: []byte("old")}, ConversionReviewVersions: []string{"v1"}}},
			"replaced the conversion caBundle", nil},
		{"v1 first of two", &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://elsewhere:1/convert"), CABundle: []byte("ca")}, ConversionReviewVersions: []string{"v1", "v1beta1"}}},
			"", []string{"v1", "v1beta1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			crd := &apiextv1.CustomResourceDefinition{Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: c.conv}}
			what := SetConversion(crd, tmpl, ep, fsmnames.ConverterPath, []byte("ca"))
			if !strings.HasPrefix(what, c.wantWhat) || (c.wantWhat == "") != (what == "") {
				t.Errorf("SetConversion = %q, want %q", what, c.wantWhat)
			}
			if !conversionComplete(crd) || !bytes.Equal(ConversionCABundle(crd), []byte("ca")) {
				t.Errorf("conversion after SetConversion: %+v", crd.Spec.Conversion)
			}
			if c.wantWhat != "set spec.conversion" {
				got := crd.Spec.Conversion.Webhook.ClientConfig
				if (got.URL == nil || *got.URL != "https://elsewhere:1/convert") && (got.Service == nil || got.Service.Name != "conv") {
					t.Errorf("existing conversion target replaced: %+v", got)
				}
			} else if s := crd.Spec.Conversion.Webhook.ClientConfig.Service; crd.Spec.Conversion.Strategy != apiextv1.WebhookConverter || s == nil || s.Name != fsmnames.ConverterService {
				t.Errorf("stanza not set to the converter: %+v", crd.Spec.Conversion)
			}
			want := c.wantVersions
			if want == nil {
				want = []string{"v1"}
			}
			if got := crd.Spec.Conversion.Webhook.ConversionReviewVersions; !reflect.DeepEqual(got, want) {
				t.Errorf("conversionReviewVersions %q, want %q", got, want)
			}
			if tmpl.Webhook.ClientConfig != nil {
				t.Error("SetConversion filled in its template")
			}
		})
	}
}

func TestDescribeBundle(t *testing.T) {
	for in, want := range map[string]string{"": "empty", "garbage": "unparsable (7 bytes)"} {
		if got := describeBundle([]byte(in)); got != want {
			t.Errorf("describeBundle(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	good := Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Namespace: "fsm-system", MeshName: "fsm", Issuer: nopIssuer{}}
	hook := Webhook{Name: "validator", Port: 9093, ServiceName: fsmnames.ValidatorService, SecretName: fsmnames.ValidatorCertSecret,
		Handlers: map[string]http.Handler{fsmnames.ValidatorPath: http.NotFoundHandler()}, Registration: testValidatorRegistration()}
	cases := []struct {
		name    string
		opts    func(*Options)
		hook    func(*Webhook)
		wantErr string
	}{
		{"ok", nil, nil, ""},
		{"no config", func(o *Options) { o.Config = nil }, nil, "Config"},
		{"no issuer", func(o *Options) { o.Issuer = nil }, nil, "Issuer"},
		{"bad namespace", func(o *Options) { o.Namespace = "FSM" }, nil, `namespace "FSM"`},
		{"bad fraction", func(o *Options) { o.RenewFraction = 1.5 }, nil, "RenewFraction 1.5"},
		{"bad url host", func(o *Options) { o.WebhookURLHost = "a b" }, nil, `URLHost "a b"`},
		{"bad port", nil, func(w *Webhook) { w.Port = 70000 }, "Port 70000"},
		{"port 0", nil, func(w *Webhook) { w.Port = 0 }, "Port 0"},
		{"port 65535", nil, func(w *Webhook) { w.Port = 65535 }, ""},
		{"no webhooks in mutating template", nil, func(w *Webhook) {
			w.Registration = Registration{Kind: MutatingConfiguration, Name: "test-injector", Path: fsmnames.ValidatorPath,
				Mutating: &admv1.MutatingWebhookConfiguration{}}
		}, "Registration.Mutating must hold at least one webhook"},
		{"conversion without review versions", nil, func(w *Webhook) {
			w.Registration = Registration{Kind: CRDConversion, Name: "things.test.flomesh.io", Path: fsmnames.ValidatorPath,
				Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{}}}
		}, "with conversionReviewVersions"},
		{"conversion strategy None with a webhook", nil, func(w *Webhook) {
			w.Registration = Registration{Kind: CRDConversion, Name: "things.test.flomesh.io", Path: fsmnames.ValidatorPath,
				Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}}}}
		}, "Registration.Conversion must be a Webhook strategy"},
		{"path without handler", nil, func(w *Webhook) { w.Registration.Path = "/other" }, `"/other" has no handler`},
		{"no webhooks in template", nil, func(w *Webhook) { w.Registration.Validating.Webhooks = nil }, "at least one webhook"},
		{"conversion without template", nil, func(w *Webhook) {
			w.Registration = Registration{Kind: CRDConversion, Name: "things.test.flomesh.io", Path: fsmnames.ValidatorPath}
		}, "Registration.Conversion must be a Webhook strategy"},
		{"conversion strategy None", nil, func(w *Webhook) {
			w.Registration = Registration{Kind: CRDConversion, Name: "things.test.flomesh.io", Path: fsmnames.ValidatorPath,
				Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}}
		}, "Registration.Conversion must be a Webhook strategy"},
		{"bad secret name", nil, func(w *Webhook) { w.SecretName = "Bad" }, `SecretName "Bad"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, w := good, hook
			w.Registration = testValidatorRegistration()
			if c.opts != nil {
				c.opts(&o)
			}
			if c.hook != nil {
				c.hook(&w)
			}
			_, err := New(o, []Webhook{w})
			if c.wantErr == "" && err != nil {
				t.Fatalf("unexpected %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("error %v, want %q", err, c.wantErr)
			}
		})
	}
	if _, err := New(good, []Webhook{hook, hook}); err == nil || !strings.Contains(err.Error(), "both use port 9093") {
		t.Errorf("duplicate port: %v", err)
	}
}

type nopIssuer struct{}

func (nopIssuer) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	return nil, errors.New("nop issuer")
}
func (nopIssuer) CABundle(context.Context) ([]byte, error) { return nil, errors.New("nop issuer") }
func (nopIssuer) Provider() string                         { return "nop" }
