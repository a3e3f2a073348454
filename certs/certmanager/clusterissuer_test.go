package certmanager

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
)

// TestClusterIssuerWithoutCABundleSecret: FSM v1.5.1 on cert-manager never
// reads the Secret --ca-bundle-secret-name names (cmd/fsm-injector
// getCertOptions passes no Secret name to the cert-manager provider; its
// issuer takes every CA from the CertificateRequest's status.ca), although
// its docs ask for one. An FSM user on a ClusterIssuer, whose CA Secret
// lives in cert-manager's namespace, may have no fsm-ca-bundle at all:
// every certificate, so every meshed pod create, must still be issued, with
// status.ca as the trust. Once the Secret exists it is the trust again, and
// a certificate it does not verify is refused. cert-manager's own
// clusterissuers, approver and CA issuer controllers sign.
func TestClusterIssuerWithoutCABundleSecret(t *testing.T) {
	env, cm, cmNS, fsmNS := startClusterEnv(t)
	ctx := context.Background()

	root := cmdev.ClusterCA(t, env.Clientset, cm, cmNS, "mesh-ca-"+fsmNS)

	var logged []string
	i, err := New(Options{IssuerName: "mesh-ca-" + fsmNS, IssuerKind: "ClusterIssuer", IssuerGroup: DefaultIssuerGroup,
		Namespace: fsmNS, Client: cm, CABundleSecret: fsmnames.CABundleSecretName, Secrets: env.Clientset,
		Logger: funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	cn := "0b6a7c1e-2f4d-4a59-9d3e-6f8a1b2c3d4e.sidecar.app.default.cluster.local"
	issueBootstrap := func() (*certs.Certificate, error) {
		// A hang guard: cert-manager's approver and CA issuer each act on
		// an informer event, seconds late on a starved machine.
		ictx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return i.Issue(ictx, certs.Request{CommonName: cn, DNSNames: []string{cn}, Validity: time.Hour, Usage: certs.UsageBoth})
	}

	c, err := issueBootstrap()
	if err != nil {
		t.Fatalf("bootstrap certificate without %s (FSM needs none): %v", fsmnames.CABundleSecretName, err)
	}
	leaf, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the certificate does not verify against the ClusterIssuer's root: %v", err)
	}
	if !bytes.Equal(c.CABundle, pemOf(root.Cert)) {
		t.Errorf("certificate bundle = %s, want the ClusterIssuer's root (status.ca)", c.CABundle)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(root.Cert)) {
		t.Errorf("CABundle = %s, %v; want the ClusterIssuer's root (status.ca)", b, err)
	}
	if !strings.Contains(strings.Join(logged, "\n"), "No CA Secret: trusting the status.ca") {
		t.Errorf("the missing Secret is not logged: %q", logged)
	}

	// The Secret created with another root: it is the trust, and the
	// ClusterIssuer's certificates are refused, naming the Secret.
	other := newRoot(t)
	if _, err := env.Clientset.CoreV1().Secrets(fsmNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fsmnames.CABundleSecretName},
		Data:       map[string][]byte{"ca.crt": pemOf(other.Cert)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(other.Cert)) {
		t.Errorf("CABundle with the Secret = %s, %v; want its ca.crt", b, err)
	}
	if _, err := issueBootstrap(); err == nil || !strings.Contains(err.Error(), "ca.crt of CA Secret "+fsmNS+"/"+fsmnames.CABundleSecretName) {
		t.Errorf("a certificate the Secret's ca.crt does not verify: err = %v, want a refusal naming the Secret", err)
	}

	// Deleted again: status.ca is the trust again.
	if err := env.Clientset.CoreV1().Secrets(fsmNS).Delete(ctx, fsmnames.CABundleSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := issueBootstrap(); err != nil {
		t.Fatalf("after the Secret is deleted: %v", err)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(root.Cert)) {
		t.Errorf("CABundle after the Secret is deleted = %s, %v; want the ClusterIssuer's root", b, err)
	}
	if got := strings.Count(strings.Join(logged, "\n"), "No CA Secret"); got != 2 {
		t.Errorf("the Secret going missing logged %d times, want once each time (2): %q", got, logged)
	}
}
