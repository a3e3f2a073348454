package certmanager

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
)

// TestLeafDoesNotOutliveItsCA: a certificate asked for longer than its CA
// has left is cut at the CA's end, as tresor (certs.Authority.Sign) and
// Vault cut theirs: cert-manager's CA issuer does not (pki.SignCertificate
// keeps the template's NotAfter), and a leaf past its CA verifies no longer
// while Certificate.NotAfter and the renewal built on it would say it does.
func TestLeafDoesNotOutliveItsCA(t *testing.T) {
	h := startCMEnv(t, 2*time.Hour, true)
	i := h.issuer(t, h.auto, DefaultIssuerName, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := i.Issue(ctx, certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"},
		Validity: 24 * time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := certs.ParseCertsPEM(c.CertPEM)
	caEnd := h.ca.Cert.NotAfter
	if c.NotAfter.After(caEnd) || leaf[0].NotAfter.After(caEnd) {
		t.Errorf("certificate NotAfter %s (leaf %s) is after its CA's NotAfter %s: it stops verifying %s before the time it reports",
			c.NotAfter.UTC().Format(time.RFC3339), leaf[0].NotAfter.UTC().Format(time.RFC3339), caEnd.UTC().Format(time.RFC3339),
			c.NotAfter.Sub(caEnd).Round(time.Minute))
	}
	renewAt := certs.Renewal{}.At(leaf[0])
	if renewAt.After(caEnd) {
		t.Errorf("renewal due at %s, after the CA expires at %s", renewAt.UTC().Format(time.RFC3339), caEnd.UTC().Format(time.RFC3339))
	}
	assertNoRequests(t, h.cm, h.auto)
}

// TestFirstCertAfterCASwitchNotCutAtOldCA: the issuer's CA Secret switches
// to a next CA (a root rotation's step 2: both roots in ca.crt, the next
// one signing). The first certificate the next CA signs must not be cut at
// the end of the CA it replaces, which the provider remembered as the
// signer: a bootstrap certificate is never renewed.
func TestFirstCertAfterCASwitchNotCutAtOldCA(t *testing.T) {
	h := startCMEnv(t, 2*time.Hour, true)
	i := h.issuer(t, h.auto, DefaultIssuerName, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := certs.Request{CommonName: "p1.sidecar.sa.bookstore.cluster.local", DNSNames: []string{"p1.sidecar.sa.bookstore.cluster.local"},
		Validity: 24 * time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256}
	if _, err := i.Issue(ctx, req); err != nil {
		t.Fatal(err)
	}
	next, err := certs.NewRootAuthority(certs.RSA2048, 48*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nextKey, _ := certs.EncodeKeyPEM(next.Key)
	// certs/rootrotation's steps 1 and 2: both roots in ca.crt, then the
	// Issuer signs from a Secret of the next CA.
	s, err := h.env.Clientset.CoreV1().Secrets(h.auto).Get(ctx, fsmnames.CABundleSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["ca.crt"] = append(h.caPEM, certs.EncodeCertsPEM(next.Cert)...)
	if _, err := h.env.Clientset.CoreV1().Secrets(h.auto).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.env.Clientset.CoreV1().Secrets(h.auto).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "next-ca"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certs.EncodeCertsPEM(next.Cert), "tls.key": nextKey},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	iss, err := h.cm.CertmanagerV1().Issuers(h.auto).Get(ctx, DefaultIssuerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iss.Spec.CA.SecretName = "next-ca"
	if _, err := h.cm.CertmanagerV1().Issuers(h.auto).Update(ctx, iss, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmdev.WaitIssuerReady(t, h.cm, h.auto, DefaultIssuerName, 30*time.Second)
	for {
		start := time.Now()
		c, err := i.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := certs.ParseCertsPEM(c.CertPEM)
		if leaf[0].CheckSignatureFrom(next.Cert) != nil {
			continue // cert-manager has not read the next CA yet
		}
		if got := c.NotAfter.Sub(start); got < 24*time.Hour-2*time.Minute {
			t.Errorf("first certificate the next CA (48h) signed is valid for %s, want the 24h asked: cut at the end of the CA it replaced", got.Round(time.Second))
		}
		break
	}
	assertNoRequests(t, h.cm, h.auto)
}
