package certmanager

import (
	"context"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
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
