package install_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// FSM's fsm.certmanager.* defaults (fsm-values-v1.5.1.yaml) and its
// fsm.caBundleSecretName default, which FSM's cert-manager set-up (its e2e
// framework, its demo) also uses for the Issuer's CA Secret.
const (
	cmIssuerName   = "fsm-ca"
	cmIssuerKind   = "Issuer"
	cmIssuerGroup  = "cert-manager.io"
	cmCABundleName = "fsm-ca-bundle"
	// fsmKeyBitSize is FSM's fsm.certificateProvider.certKeyBitSize default:
	// the RSA size of every key FSM's cert-manager provider generates.
	fsmKeyBitSize = 2048
)

// clusterCA is a meshCA that lives in the cluster under test: it starts
// once the apiserver runs and installFSM has created FSM's namespace and
// fsm-ca-bundle.
type clusterCA interface {
	start(ctx context.Context, t *testing.T, env *testenv.Env)
}

// certManagerCA is FSM's mesh CA with fsm.certificateProvider.kind=
// cert-manager, set up as FSM's documentation and e2e framework do: a CA
// whose key pair cert-manager keeps in fsm-ca-bundle (tls.crt, tls.key,
// ca.crt) and an Issuer fsm-ca of kind CA on that Secret, both in FSM's
// namespace. cert-manager's own issuers, approver and CA issuer controllers
// run in the test process (test/cmdev): every certificate FSM's stand-in
// and our serve get is a CertificateRequest cert-manager signed.
type certManagerCA struct {
	caPEM, keyPEM []byte
	cm            cmclient.Interface // set by start
	// requests counts the CertificateRequests created in FSM's namespace,
	// own those of FSM's stand-in: the rest are serve's.
	requests, own atomic.Int64
}

var _ clusterCA = (*certManagerCA)(nil)

func newCertManagerCA(_ context.Context, t *testing.T) meshCA {
	t.Helper()
	ca, err := certs.NewRootAuthority(certs.RSA2048, 87600*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, ok := ca.Key.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("root key is %T, want RSA", ca.Key)
	}
	// cert-manager's default private key encoding for a Certificate is
	// PKCS#1.
	return &certManagerCA{
		caPEM:  certs.EncodeCertsPEM(ca.Cert),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}
}

// start installs cert-manager's CRDs, runs its controllers for FSM's
// namespace, creates the Issuer and waits until it is Ready. Then, as FSM's
// controller does at start-up (getCA: an "init-cert"), it asks for a
// certificate and checks that the CA cert-manager returns is the caBundle
// installFSM wrote, byte for byte.
func (c *certManagerCA) start(ctx context.Context, t *testing.T, env *testenv.Env) {
	t.Helper()
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{cmdev.CRDs(t)}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing cert-manager's CRDs: %v", err)
	}
	cmdev.Start(t, env.KubeConfig, ns)
	c.cm = cmclient.NewForConfigOrDie(env.Config)
	c.countRequests(ctx, t, env.Config)
	if _, err := c.cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: cmIssuerName},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: cmCABundleName}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmdev.WaitIssuerReady(t, c.cm, ns, cmIssuerName, 2*time.Minute)
	ca, _ := c.issue(ctx, t, "init-cert", time.Second)
	if !bytes.Equal(ca, c.bundle()) {
		t.Fatalf("cert-manager's status.ca for Issuer %s:\n%s\nis not the caBundle FSM wrote:\n%s", cmIssuerName, ca, c.bundle())
	}
}

// countRequests counts every CertificateRequest created from now on and,
// when the test ends, fails it if serve created none: its certificates
// must come from the Issuer, not from a provider of its own.
func (c *certManagerCA) countRequests(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	cm, err := cmclient.NewForConfig(watchConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	w, err := cm.CertmanagerV1().CertificateRequests(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var stopping atomic.Bool
	var endedAt atomic.Pointer[time.Time] // the watch ended before the test
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				c.requests.Add(1)
			}
		}
		if !stopping.Load() {
			now := time.Now()
			endedAt.Store(&now)
		}
	}()
	t.Cleanup(func() {
		stopping.Store(true)
		w.Stop()
		<-done
		own := c.own.Load()
		serves := c.requests.Load() - own
		t.Logf("cert-manager's CA issuer signed %d CertificateRequests: %d of FSM's stand-in, %d of serve's (its serving certs, the pods' bootstrap certs)", serves+own, own, serves)
		switch at := endedAt.Load(); {
		case serves > 0:
		case at != nil:
			t.Errorf("the watch counting CertificateRequests ended at %s, before the test: serve's requests after it were not counted", at.Format("15:04:05.000"))
		default:
			t.Errorf("serve created no CertificateRequest: its certificates did not come from Issuer %s/%s", ns, cmIssuerName)
		}
	})
}

// issue asks the Issuer for a certificate as FSM's cert-manager provider
// does: an RSA key of certKeyBitSize, a CSR for commonName, a
// CertificateRequest (generateName fsm-, usages key encipherment and
// digital signature) awaited until Ready, then deleted. It returns
// status.ca, which FSM takes as the issuing CA, and the key pair.
func (c *certManagerCA) issue(ctx context.Context, t *testing.T, commonName string, validity time.Duration) (issuingCA []byte, pair tls.Certificate) {
	t.Helper()
	if c.cm == nil {
		t.Fatal("cert-manager CA used before start")
	}
	key, err := rsa.GenerateKey(rand.Reader, fsmKeyBitSize)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}, DNSNames: []string{commonName}}, key)
	if err != nil {
		t.Fatal(err)
	}
	crs := c.cm.CertmanagerV1().CertificateRequests(ns)
	c.own.Add(1)
	cr, err := crs.Create(ctx, &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "fsm-"},
		Spec: cmapi.CertificateRequestSpec{
			Duration:  &metav1.Duration{Duration: validity},
			Usages:    []cmapi.KeyUsage{cmapi.UsageKeyEncipherment, cmapi.UsageDigitalSignature},
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			IssuerRef: cmmeta.IssuerReference{Name: cmIssuerName, Kind: cmIssuerKind, Group: cmIssuerGroup},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("CertificateRequest for %s: %v", commonName, err)
	}
	poll.Until(t, time.Minute, 50*time.Millisecond, fmt.Sprintf("CertificateRequest %s/%s for %s issued", ns, cr.Name, commonName), func() error {
		if cr, err = crs.Get(ctx, cr.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		return crIssued(cr)
	})
	if err := crs.Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting CertificateRequest %s/%s: %v", ns, cr.Name, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if pair, err = tls.X509KeyPair(cr.Status.Certificate, keyPEM); err != nil {
		t.Fatalf("CertificateRequest %s/%s: %v", ns, cr.Name, err)
	}
	return cr.Status.CA, pair
}

// crIssued is nil once cr is Ready with its certificate, the reason it is
// not yet otherwise. A denial never turns into an issuance, but the caller
// keeps polling to the deadline: the error then names the denial.
func crIssued(cr *cmapi.CertificateRequest) error {
	for _, cond := range cr.Status.Conditions {
		if cond.Type == cmapi.CertificateRequestConditionReady && cond.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0 {
			return nil
		}
	}
	if len(cr.Status.Conditions) == 0 {
		return errors.New("no condition yet")
	}
	return fmt.Errorf("conditions %+v", cr.Status.Conditions)
}

// bundle is the CA as FSM writes it into its configurations' caBundle: the
// issuing CA of its init-cert, cert-manager's status.ca (start checks it).
func (c *certManagerCA) bundle() []byte { return c.caPEM }

// secretData is fsm-ca-bundle as cert-manager writes a self-signed CA
// Certificate's Secret in FSM's set-up; FSM itself neither writes nor reads
// it with cert-manager (its provider only creates CertificateRequests).
func (c *certManagerCA) secretData() map[string][]byte {
	return map[string][]byte{"tls.crt": c.caPEM, "tls.key": c.keyPEM, "ca.crt": c.caPEM}
}

// serving is FSM's injector's serving cert: issued from the Issuer through
// a CertificateRequest (24h: FSM's webhook certs are renewed long before).
func (c *certManagerCA) serving(t *testing.T, dnsName string) tls.Certificate {
	t.Helper()
	_, pair := c.issue(context.Background(), t, dnsName, 24*time.Hour)
	return pair
}

// values are FSM's cert-manager settings, carried over as FSM's release
// has them (its defaults, fsm-values-v1.5.1.yaml).
func (c *certManagerCA) values() map[string]any {
	return map[string]any{
		"certificateProvider": map[string]any{"kind": "cert-manager"},
		"certmanager":         map[string]any{"issuerName": cmIssuerName, "issuerKind": cmIssuerKind, "issuerGroup": cmIssuerGroup},
	}
}
