package certmanager

import (
	"bytes"
	"context"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
)

// TestCASecretWithoutCACrt: the CA Issuer's Secret made as cert-manager's
// docs make it (kubectl create secret tls: tls.crt and tls.key, no ca.crt)
// under the CA bundle Secret's name. FSM v1.5.1 never reads that Secret with
// cert-manager and works on it, trusting status.ca; so must we, rather
// than refuse every certificate (every pod create, every serving cert:
// serve never Ready) for a key FSM never asked for.
func TestCASecretWithoutCACrt(t *testing.T) {
	h := startCMEnv(t, 24*time.Hour, true)
	ctx := context.Background()
	const name = "tls-only"
	key, _ := certs.EncodeKeyPEM(h.ca.Key)
	if _, err := h.env.Clientset.CoreV1().Secrets(h.auto).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": h.caPEM, "tls.key": key},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cm.CertmanagerV1().Issuers(h.auto).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: name}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmdev.WaitIssuerReady(t, h.cm, h.auto, name, 30*time.Second)
	i, err := New(Options{IssuerName: name, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup,
		Namespace: h.auto, Client: h.cm, CABundleSecret: name, Secrets: h.env.Clientset})
	if err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := i.Issue(ictx, certs.Request{CommonName: "x.svc", DNSNames: []string{"x.svc"}, Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatalf("Issue on a CA Secret without ca.crt: %v", err)
	}
	if !bytes.Equal(c.CABundle, h.caPEM) {
		t.Errorf("certificate bundle %s, want the issuer's CA (status.ca)", c.CABundle)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, h.caPEM) {
		t.Errorf("CABundle = %s, %v; want the issuer's CA (status.ca)", b, err)
	}
	assertNoRequests(t, h.cm, h.auto)
}
