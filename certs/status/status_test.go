package status

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextfake "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

const ns = "fsm-system"

var (
	validatorHook = webhooks.Webhook{
		Name: "validator", Port: 9093, ServiceName: fsmnames.ValidatorService, SecretName: fsmnames.ValidatorCertSecret,
		Registration: webhooks.Registration{Kind: webhooks.ValidatingConfiguration, Name: fsmnames.ValidatingConfigurationName("fsm"), Path: fsmnames.ValidatorPath},
	}
	converterHook = webhooks.Webhook{
		Name: "converter", Port: 9443, ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
		Registration: webhooks.Registration{Kind: webhooks.CRDConversion, Name: fsmnames.MeshConfigCRDName, Path: fsmnames.ConverterPath},
	}
)

func validatingConfig(bundles ...[]byte) *admv1.ValidatingWebhookConfiguration {
	cfg := &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: validatorHook.Registration.Name}}
	for i, b := range bundles {
		cfg.Webhooks = append(cfg.Webhooks, admv1.ValidatingWebhook{
			Name:         []string{"fsm-validator.k8s.io", "meshconfig-validator.flomesh.io"}[i],
			ClientConfig: admv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9093/validate"), CABundle: b},
		})
	}
	return cfg
}

func crd(bundle []byte) *apiextv1.CustomResourceDefinition {
	return &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName},
		Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: &apiextv1.CustomResourceConversion{
			Strategy: apiextv1.WebhookConverter,
			Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
				ClientConfig: &apiextv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/convert"), CABundle: bundle}},
		}},
	}
}

// noConversionCRD is the MeshConfig CRD with conversion strategy None.
func noConversionCRD() *apiextv1.CustomResourceDefinition {
	return &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName},
		Spec:       apiextv1.CustomResourceDefinitionSpec{Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}},
	}
}

// conversionLease is the MeshConfig CRD's conversion-owner Lease held by
// holder, last renewed at renewed for 15 s.
func conversionLease(holder string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: webhooks.DefaultConversionLeaseNamespace, Name: webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime: &metav1.MicroTime{Time: renewed}},
	}
}

func newCA(t *testing.T) *certstest.CA {
	t.Helper()
	ca, err := certstest.New(context.Background(), certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func bundleOf(t *testing.T, ca *certstest.CA) []byte {
	t.Helper()
	b, err := ca.CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheck: the report of what the cluster holds, one scenario per row;
// the mesh CA is the same in every row, the objects differ.
func TestCheck(t *testing.T) {
	ca := newCA(t)
	good := bundleOf(t, ca)
	other := bundleOf(t, newCA(t))
	opts := webhooks.Options{Namespace: ns, MeshName: "fsm", Issuer: ca}

	cases := []struct {
		name string
		// secrets: which webhooks get a serving cert from ca.
		secrets []webhooks.Webhook
		objects []runtime.Object
		crds    []runtime.Object
		hooks   []webhooks.Webhook
		healthy bool
		// want: per webhook, the CABundleProblem ("" = verifies) and the
		// CertProblem.
		wantCABundle, wantCert []string
		// wantOwner is the converter's ConversionOwner.
		wantOwner string
	}{{
		name:    "healthy",
		secrets: []webhooks.Webhook{validatorHook, converterHook},
		objects: []runtime.Object{validatingConfig(good, good)},
		crds:    []runtime.Object{crd(good)},
		hooks:   []webhooks.Webhook{validatorHook, converterHook},
		healthy: true, wantCABundle: []string{"", ""}, wantCert: []string{"", ""},
	}, {
		name:         "caBundle of another CA",
		secrets:      []webhooks.Webhook{validatorHook},
		objects:      []runtime.Object{validatingConfig(other, other)},
		hooks:        []webhooks.Webhook{validatorHook},
		wantCABundle: []string{"x509: certificate signed by unknown authority"}, wantCert: []string{""},
	}, {
		name:         "entries disagree",
		secrets:      []webhooks.Webhook{validatorHook},
		objects:      []runtime.Object{validatingConfig(good, other)},
		hooks:        []webhooks.Webhook{validatorHook},
		wantCABundle: []string{"webhooks fsm-validator.k8s.io and meshconfig-validator.flomesh.io carry different caBundles"}, wantCert: []string{""},
	}, {
		name:         "no Secret",
		objects:      []runtime.Object{validatingConfig(good)},
		hooks:        []webhooks.Webhook{validatorHook},
		wantCABundle: []string{"no serving cert to verify"}, wantCert: []string{"Secret not found"},
	}, {
		name:         "no configuration, no CRD",
		secrets:      []webhooks.Webhook{validatorHook, converterHook},
		hooks:        []webhooks.Webhook{validatorHook, converterHook},
		wantCABundle: []string{"not found", "not found"}, wantCert: []string{"", ""},
	}, {
		// The configuration exists with `webhooks: []`: nothing calls the
		// validator through it.
		name:         "configuration without webhooks",
		secrets:      []webhooks.Webhook{validatorHook},
		objects:      []runtime.Object{validatingConfig()},
		hooks:        []webhooks.Webhook{validatorHook},
		wantCABundle: []string{"without webhooks"}, wantCert: []string{""},
	}, {
		// The CRD exists but calls no converter (strategy None).
		name:         "CRD without a conversion webhook",
		secrets:      []webhooks.Webhook{converterHook},
		crds:         []runtime.Object{noConversionCRD()},
		hooks:        []webhooks.Webhook{converterHook},
		wantCABundle: []string{"without a conversion webhook"}, wantCert: []string{""},
	}, {
		name:         "conversion owned by this mesh",
		secrets:      []webhooks.Webhook{converterHook},
		objects:      []runtime.Object{conversionLease("fsm-system/fsm|fsm-webhooks-1-abcde", time.Now())},
		crds:         []runtime.Object{crd(good)},
		hooks:        []webhooks.Webhook{converterHook},
		healthy:      true,
		wantCABundle: []string{""}, wantCert: []string{""}, wantOwner: "fsm-system/fsm",
	}, {
		// Another mesh's converter writes the stanza with its CA: expected.
		name:         "conversion owned by another mesh",
		secrets:      []webhooks.Webhook{converterHook},
		objects:      []runtime.Object{conversionLease("other-system/other|host-1-fghij", time.Now())},
		crds:         []runtime.Object{crd(other)},
		hooks:        []webhooks.Webhook{converterHook},
		healthy:      true,
		wantCABundle: []string{"x509: certificate signed by unknown authority"}, wantCert: []string{""}, wantOwner: "other-system/other",
	}, {
		// Its owner is gone: the stanza must now be this mesh's.
		name:         "another mesh's Lease expired",
		secrets:      []webhooks.Webhook{converterHook},
		objects:      []runtime.Object{conversionLease("other-system/other|host-1-fghij", time.Now().Add(-time.Minute))},
		crds:         []runtime.Object{crd(other)},
		hooks:        []webhooks.Webhook{converterHook},
		wantCABundle: []string{"x509: certificate signed by unknown authority"}, wantCert: []string{""},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			client := fake.NewClientset(c.objects...)
			for _, w := range c.secrets {
				store := &servingcert.Store{Client: client, Issuer: ca}
				if _, err := store.Ensure(ctx, w.ServingSpec(opts), good); err != nil {
					t.Fatal(err)
				}
			}
			reader := webhooks.NewCABundleReader(client, apiextfake.NewClientset(c.crds...))
			rep, err := check(ctx, opts, c.hooks, client, reader, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Healthy != c.healthy || (len(rep.Problems) == 0) != c.healthy {
				t.Errorf("healthy %v with problems %q, want %v", rep.Healthy, rep.Problems, c.healthy)
			}
			if rep.Provider != certstest.ProviderName || len(rep.CAs) != 1 || rep.CAs[0].Subject != ca.Active().Subject.String() {
				t.Errorf("CAs %+v from %s", rep.CAs, rep.Provider)
			}
			if len(rep.Webhooks) != len(c.hooks) {
				t.Fatalf("%d webhooks reported, want %d", len(rep.Webhooks), len(c.hooks))
			}
			for i, ws := range rep.Webhooks {
				w := c.hooks[i]
				if ws.Name != w.Name || ws.Secret != ns+"/"+w.SecretName || ws.Registration != w.Registration.Kind.String()+"/"+w.Registration.Name {
					t.Errorf("webhook %d identified as %s %s %s", i, ws.Name, ws.Secret, ws.Registration)
				}
				if ws.CABundleVerifies != (c.wantCABundle[i] == "") || !strings.Contains(ws.CABundleProblem, c.wantCABundle[i]) {
					t.Errorf("%s: caBundle verifies %v, problem %q, want problem %q", ws.Name, ws.CABundleVerifies, ws.CABundleProblem, c.wantCABundle[i])
				}
				if w.Registration.Kind == webhooks.CRDConversion && ws.ConversionOwner != c.wantOwner {
					t.Errorf("%s: conversion owner %q, want %q", ws.Name, ws.ConversionOwner, c.wantOwner)
				}
				if ws.CertProblem != c.wantCert[i] {
					t.Errorf("%s: cert problem %q, want %q", ws.Name, ws.CertProblem, c.wantCert[i])
				}
				if hasSecret := ws.Cert != nil; hasSecret != (c.wantCert[i] == "") {
					t.Errorf("%s: cert %+v", ws.Name, ws.Cert)
				}
				if ws.Cert != nil && !strings.Contains(ws.Cert.Subject, w.ServiceName+"."+ns+".svc") {
					t.Errorf("%s: cert subject %s", ws.Name, ws.Cert.Subject)
				}
			}
		})
	}
}

// TestWrite: the table names the verdicts for humans, the JSON round-trips.
func TestWrite(t *testing.T) {
	rep := &Report{Healthy: false, Problems: []string{"validator: caBundle of X: not found"}, Provider: "tresor",
		CAs: []CertInfo{{Subject: "CN=fsm-ca", NotAfter: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC), DaysLeft: 3650}},
		Webhooks: []WebhookStatus{
			{Name: "injector", Secret: "fsm-system/s", Registration: "MutatingWebhookConfiguration/m", CABundleVerifies: true,
				Cert: &CertInfo{Subject: "CN=fsm-injector.fsm-system.svc", Issuer: "CN=fsm-ca", DaysLeft: 3650}},
			{Name: "validator", Secret: "fsm-system/v", Registration: "ValidatingWebhookConfiguration/v", CABundleProblem: "not found"},
		}}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CA (tresor)", "root 1", "CN=fsm-ca", "CN=fsm-injector.fsm-system.svc", "verifies", "FAILS: not found",
		"healthy: no", "  - validator: caBundle of X: not found"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Healthy || back.Webhooks[1].CABundleProblem != "not found" || back.Webhooks[0].Cert.Subject != rep.Webhooks[0].Cert.Subject {
		t.Errorf("JSON round trip: %+v", back)
	}
}

// TestWriteOmitsUnsetSince: a root never rotated has no phase start; its
// "since" (meant to be omitted when empty, as the table omits it) read
// "0001-01-01T00:00:00Z" in JSON and YAML, a date a script takes for a
// rotation stuck since year 1.
func TestWriteOmitsUnsetSince(t *testing.T) {
	rep := &Report{Healthy: true, Provider: "tresor", RootRotation: TresorRotation(tresor.RotationStatus{Managed: true}, time.Now())}
	for _, format := range []string{"json", "yaml"} {
		var out bytes.Buffer
		if err := rep.Write(&out, format); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "since") || strings.Contains(out.String(), "0001-01-01") {
			t.Errorf("-o %s of phase %s has a since:\n%s", format, rep.RootRotation.Phase, out.String())
		}
	}
	rep.RootRotation.Since = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"since": "2026-12-01T00:00:00Z"`) {
		t.Errorf("JSON lacks the phase's since:\n%s", out.String())
	}
}

// TestCheckCertExpiringWithItsCA: a serving cert past its renewal point that
// the servers keep because no CA outlives it (servingcert.Verdict.Final) is
// still reported: it expires with its CA unless a later one is added.
func TestCheckCertExpiringWithItsCA(t *testing.T) {
	ctx := context.Background()
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 2 * time.Minute, Backdate: certs.ClockSkew})
	opts := webhooks.Options{Namespace: ns, MeshName: "fsm", Issuer: ca}
	trusted := bundleOf(t, ca)
	client := fake.NewClientset(validatingConfig(trusted))
	if _, err := (&servingcert.Store{Client: client, Issuer: ca}).Ensure(ctx, validatorHook.ServingSpec(opts), trusted); err != nil {
		t.Fatal(err)
	}
	rep, err := check(ctx, opts, []webhooks.Webhook{validatorHook}, client, webhooks.NewCABundleReader(client, apiextfake.NewClientset()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const want = "no CA of the mesh CA bundle outlives it"
	if rep.Healthy || len(rep.Webhooks) != 1 || !strings.Contains(rep.Webhooks[0].CertProblem, want) {
		t.Fatalf("healthy %v, problems %q; want the serving cert reported with %q", rep.Healthy, rep.Problems, want)
	}
}

// TestWriteVaultConfiguration: the table names the Vault the report checked,
// and its namespace when one is configured (a mount in another namespace is
// another Vault PKI altogether).
func TestWriteVaultConfiguration(t *testing.T) {
	for _, tc := range []struct {
		namespace, want string
	}{
		{"", " https://vault:8200 role flomesh\n"},
		{"admin/team-a", " https://vault:8200 role flomesh namespace admin/team-a\n"},
	} {
		rep := &Report{Provider: "vault", Configuration: &Configuration{Source: "flags", MeshName: "fsm", FSMNamespace: "fsm-system",
			Provider: "vault", VaultAddress: "https://vault:8200", VaultRole: "flomesh", VaultNamespace: tc.namespace}}
		var table bytes.Buffer
		if err := rep.WriteTable(&table); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(table.String(), tc.want) {
			t.Errorf("namespace %q: table lacks %q:\n%s", tc.namespace, tc.want, table.String())
		}
	}
}
