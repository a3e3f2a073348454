package status

import (
	"context"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestCheckReportsWhatTheAPIServerHolds: through a real apiserver, a row
// of `certs status` never reads healthy when the serving cert in the
// Secret is from a CA the mesh does not trust, nor when this mesh owns the
// CRD conversion and its caBundle does not verify the converter's cert
// (only another mesh's conversion may carry another CA).
func TestCheckReportsWhatTheAPIServerHolds(t *testing.T) {
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	ctx := context.Background()
	cs := env.Clientset
	ca, other := newCA(t), newCA(t)
	good, foreign := bundleOf(t, ca), bundleOf(t, other)
	opts := webhooks.Options{Namespace: ns, MeshName: "fsm", Issuer: ca, Config: env.Config}
	for _, n := range []string{ns, webhooks.DefaultConversionLeaseNamespace} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}

	// The validator's Secret holds a cert from another CA; its
	// configuration trusts the mesh CA.
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: validatorHook.SecretName},
		Data: certstest.ServingSecretData(t, other, validatorHook.ServingSpec(opts))}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, withSideEffects(validatingConfig(good)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The converter's cert is good; this mesh holds the conversion Lease,
	// and the CRD carries another CA.
	if _, err := (&servingcert.Store{Client: cs, Issuer: ca}).Ensure(ctx, converterHook.ServingSpec(opts), good); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoordinationV1().Leases(webhooks.DefaultConversionLeaseNamespace).Create(ctx,
		conversionLease("fsm-system/fsm|fsm-webhooks-1-abcde", time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setConversion(t, env.Config, foreign)

	rep, err := Check(ctx, opts, []webhooks.Webhook{validatorHook, converterHook})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || len(rep.Webhooks) != 2 {
		t.Fatalf("healthy %v with %d webhooks, want two unhealthy ones", rep.Healthy, len(rep.Webhooks))
	}
	for _, tc := range []struct {
		ws                    WebhookStatus
		wantCert, wantProblem string
	}{
		{rep.Webhooks[0], "the mesh CA bundle no longer verifies the cert", "validator: serving cert in " + ns + "/" + validatorHook.SecretName},
		{rep.Webhooks[1], "", "converter: caBundle of CustomResourceDefinition/" + fsmnames.MeshConfigCRDName + ": x509: certificate signed by unknown authority"},
	} {
		if tc.wantCert == "" && tc.ws.CertProblem != "" || !strings.Contains(tc.ws.CertProblem, tc.wantCert) {
			t.Errorf("%s: cert problem %q, want %q", tc.ws.Name, tc.ws.CertProblem, tc.wantCert)
		}
		found := false
		for _, p := range rep.Problems {
			found = found || strings.HasPrefix(p, tc.wantProblem)
		}
		if !found {
			t.Errorf("%s: problems %q, want one starting %q", tc.ws.Name, rep.Problems, tc.wantProblem)
		}
	}
	if rep.Webhooks[1].ConversionOwner != "fsm-system/fsm" {
		t.Errorf("conversion owner %q, want this mesh", rep.Webhooks[1].ConversionOwner)
	}
}

func withSideEffects(cfg *admv1.ValidatingWebhookConfiguration) *admv1.ValidatingWebhookConfiguration {
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].SideEffects = ptr.To(admv1.SideEffectClassNone)
		cfg.Webhooks[i].AdmissionReviewVersions = []string{"v1"}
	}
	return cfg
}

// setConversion points the MeshConfig CRD's conversion at the converter
// with caBundle.
func setConversion(t *testing.T, cfg *rest.Config, caBundle []byte) {
	t.Helper()
	ctx := context.Background()
	client, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Conversion = crd(caBundle).Spec.Conversion
	if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
