package certmanager

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmfake "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

const fakeNS = "fsm-system"

// fakeCertManager is a cert-manager clientset whose CertificateRequests are
// signed, every few milliseconds, by whatever root the returned pointer
// holds (a CA issuer whose signing root the operator switches), with that
// root as status.ca.
func fakeCertManager(t *testing.T, root *certs.Authority) (*cmfake.Clientset, *atomic.Pointer[certs.Authority]) {
	t.Helper()
	return fakeCertManagerCA(t, root, true)
}

// fakeCertManagerCA is fakeCertManager whose answers carry status.ca only
// when reportCA (some issuers leave it empty).
func fakeCertManagerCA(t *testing.T, root *certs.Authority, reportCA bool) (*cmfake.Clientset, *atomic.Pointer[certs.Authority]) {
	t.Helper()
	cm := newFakeClientset()
	var signer atomic.Pointer[certs.Authority]
	signer.Store(root)
	runIssuer(t, cm, fakeNS, func(tick int, cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) (bool, error) {
		ca := signer.Load()
		leaf, err := ca.Sign(certs.Request{CommonName: csr.Subject.CommonName, DNSNames: csr.DNSNames, Validity: time.Hour, Usage: certs.UsageServer}, csr.PublicKey, time.Now())
		if err != nil {
			return false, err
		}
		cr.Annotations = map[string]string{"tick": fmt.Sprint(tick)} // a Modified event each tick
		cr.Status.Certificate = certs.EncodeCertsPEM(leaf)
		if reportCA {
			cr.Status.CA = certs.EncodeCertsPEM(ca.Cert)
		}
		cr.Status.Conditions = []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"}}
		return true, nil
	})
	return cm, &signer
}

// runIssuer stands in for an issuer until the test ends: every 5 ms it hands
// each CertificateRequest of ns, with its parsed CSR, to answer, and writes
// back those answer changed (with a new resourceVersion: RetryWatcher needs
// one per event). An error from answer fails the test and stops the issuer.
func runIssuer(t *testing.T, cm *cmfake.Clientset, ns string, answer func(tick int, cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) (bool, error)) {
	t.Helper()
	ctx := context.Background()
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for tick := 0; ; tick++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			list, err := cm.CertmanagerV1().CertificateRequests(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, cr := range list.Items {
				b, _ := pem.Decode(cr.Spec.Request)
				if b == nil {
					t.Errorf("CertificateRequest %s: spec.request is not PEM", cr.Name)
					return
				}
				csr, err := x509.ParseCertificateRequest(b.Bytes)
				if err != nil {
					t.Error(err)
					return
				}
				changed, err := answer(tick, &cr, csr)
				if err != nil {
					t.Error(err)
					return
				}
				if changed {
					cr.ResourceVersion = fmt.Sprint(tick + 2)
					_, _ = cm.CertmanagerV1().CertificateRequests(ns).UpdateStatus(ctx, &cr, metav1.UpdateOptions{})
				}
			}
		}
	}()
}

// newFakeClientset is a cert-manager fake clientset whose CertificateRequest
// creates behave as the apiserver's: a generateName is filled in, and the
// object gets a resourceVersion (the fake tracker sets none; watchtools.Until
// needs one on every event) and a creationTimestamp.
func newFakeClientset() *cmfake.Clientset {
	cm := cmfake.NewSimpleClientset()
	var n atomic.Int64
	cm.PrependReactor("create", "certificaterequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		cr := a.(k8stesting.CreateAction).GetObject().(*cmapi.CertificateRequest)
		if cr.Name == "" {
			cr.Name = fmt.Sprintf("%s%d", cr.GenerateName, n.Add(1))
		}
		cr.ResourceVersion = "1"
		cr.CreationTimestamp = metav1.Now()
		if err := cm.Tracker().Create(cmapi.SchemeGroupVersion.WithResource("certificaterequests"), cr, cr.Namespace); err != nil {
			return true, nil, err
		}
		return true, cr.DeepCopy(), nil
	})
	return cm
}

func newRoot(t *testing.T) *certs.Authority {
	t.Helper()
	a, err := certs.NewRootAuthority(certs.ECDSAP256, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func issueServing(ctx context.Context, i *Issuer) (*certs.Certificate, error) {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hang guard
	defer cancel()
	return i.Issue(ictx, certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer})
}

func setSecretCA(t *testing.T, kube kubernetes.Interface, roots ...*x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	s, err := kube.CoreV1().Secrets(fakeNS).Get(ctx, fsmnames.CABundleSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["ca.crt"] = certs.EncodeCertsPEM(roots...)
	if _, err := kube.CoreV1().Secrets(fakeNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCABundleSecretIsTheTrust: with a CA bundle Secret, CABundle is its
// ca.crt and nothing else, on every replica, whatever each has issued; the
// status.ca of an issuance only goes into that certificate's own bundle.
func TestCABundleSecretIsTheTrust(t *testing.T) {
	ctx := context.Background()
	oldRoot, nextRoot := newRoot(t), newRoot(t)
	newIssuer := func(t *testing.T, cm *cmfake.Clientset, kube kubernetes.Interface) *Issuer {
		t.Helper()
		i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup,
			Namespace: fakeNS, Client: cm, CABundleSecret: fsmnames.CABundleSecretName, Secrets: kube})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	secret := func() kubernetes.Interface {
		return fake.NewSimpleClientset(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fsmnames.CABundleSecretName, Namespace: fakeNS},
			Data:       map[string][]byte{"ca.crt": certs.EncodeCertsPEM(oldRoot.Cert)},
		})
	}

	// The cert-manager root rotation of certs/rootrotation/README.md with
	// two replicas of serve, one of which issues nothing after the signer
	// switched (its serving certs renewed by RenewServingCerts, no pod
	// injected through it): once the old root left the Secret neither
	// replica trusts it, and both publish the same caBundle.
	t.Run("root rotation, replicas agree", func(t *testing.T) {
		kube := secret()
		cm, signer := fakeCertManager(t, oldRoot)
		a, b := newIssuer(t, cm, kube), newIssuer(t, cm, kube)
		for _, i := range []*Issuer{a, b} {
			if _, err := issueServing(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		setSecretCA(t, kube, oldRoot.Cert, nextRoot.Cert) // step 1
		signer.Store(nextRoot)                            // step 2
		c, err := issueServing(ctx, a)                    // a pod injected through replica a
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(c.CABundle, pemOf(nextRoot.Cert)) {
			t.Errorf("the certificate's bundle lacks the root that signed it")
		}
		setSecretCA(t, kube, nextRoot.Cert) // step 3

		ba, err := a.CABundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bb, err := b.CABundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := pemOf(nextRoot.Cert); !bytes.Equal(ba, want) || !bytes.Equal(bb, want) {
			t.Errorf("after the old root left the CA bundle Secret, replicas trust:\na: %s\nb: %s\nwant the new root only", ba, bb)
		}
	})

	// Step 2 before step 1: a certificate from a root the Secret does not
	// hold is refused (it would be trusted by no caBundle), the request is
	// deleted, and once the root is in ca.crt issuance works again.
	t.Run("signer outside the Secret is refused", func(t *testing.T) {
		kube := secret()
		cm, signer := fakeCertManager(t, nextRoot)
		i := newIssuer(t, cm, kube)
		_, err := issueServing(ctx, i)
		want := `the issuer Issuer "fsm-ca" signed under CA "` + nextRoot.Cert.Subject.CommonName + `", which no root in ca.crt of CA Secret fsm-system/fsm-ca-bundle verifies: add its root to ca.crt before the issuer signs with it`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to say %q", err, want)
		}
		if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(oldRoot.Cert)) {
			t.Errorf("CABundle = %s, %v; want the Secret's root only", b, err)
		}
		assertNoRequests(t, cm, fakeNS)

		setSecretCA(t, kube, oldRoot.Cert, nextRoot.Cert)
		if _, err := issueServing(ctx, i); err != nil {
			t.Fatalf("with the root in ca.crt: %v", err)
		}
		signer.Store(oldRoot)
		if _, err := issueServing(ctx, i); err != nil {
			t.Fatalf("old root, still in ca.crt: %v", err)
		}
	})
}

// TestCABundleWithoutSecret: without a CA bundle Secret the status.ca of the
// newest certificate is the trust; the CA of one signed earlier, even if its
// issuance completes later, does not replace it. Before anything is issued,
// CABundle learns it from an "init-cert" certificate, as FSM's controller
// does at start: a webhook's caBundle is needed before its serving cert.
func TestCABundleWithoutSecret(t *testing.T) {
	ctx := context.Background()
	oldRoot, nextRoot := newRoot(t), newRoot(t)
	cm, signer := fakeCertManager(t, oldRoot)
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: fakeNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(oldRoot.Cert)) {
		t.Errorf("CABundle before any issuance = %s, %v; want the root, learnt from an init-cert", b, err)
	}
	if got := requestedNames(t, cm); len(got) != 1 || got[0] != initCertName {
		t.Errorf("CertificateRequests %q, want one for %s", got, initCertName)
	}
	if _, err := i.CABundle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := requestedNames(t, cm); len(got) != 1 {
		t.Errorf("CertificateRequests %q: CABundle asked again although it knows the CA", got)
	}
	if _, err := issueServing(ctx, i); err != nil {
		t.Fatal(err)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(oldRoot.Cert)) {
		t.Errorf("CABundle = %s, %v; want the old root", b, err)
	}
	signer.Store(nextRoot)
	c, err := issueServing(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.CABundle, pemOf(nextRoot.Cert)) {
		t.Errorf("certificate bundle = %s, want the new root", c.CABundle)
	}
	if b, err := i.CABundle(ctx); err != nil || !bytes.Equal(b, pemOf(nextRoot.Cert)) {
		t.Errorf("CABundle = %s, %v; want the new root only", b, err)
	}
	leaf, _ := certs.ParseCertsPEM(c.CertPEM)
	i.remember(certs.EncodeCertsPEM(oldRoot.Cert), leaf[0].NotBefore.Add(-time.Second)) // a late answer signed earlier
	if b, _ := i.CABundle(ctx); !bytes.Equal(b, pemOf(nextRoot.Cert)) {
		t.Errorf("a CA from an earlier signature replaced the newest: CABundle = %s", b)
	}
}

// requestedNames is the common name of every CertificateRequest created
// through cm, in order.
func requestedNames(t *testing.T, cm *cmfake.Clientset) []string {
	t.Helper()
	var out []string
	for _, a := range cm.Actions() {
		c, ok := a.(k8stesting.CreateAction)
		if !ok || a.GetVerb() != "create" || a.GetResource().Resource != "certificaterequests" {
			continue
		}
		b, _ := pem.Decode(c.GetObject().(*cmapi.CertificateRequest).Spec.Request)
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, csr.Subject.CommonName)
	}
	return out
}

// TestLearnCAFailureNotRepeated: an issuer that answers without status.ca
// (no CA to learn) is not asked for an init-cert again on every CABundle
// call, which the caBundle resync makes every few seconds.
func TestLearnCAFailureNotRepeated(t *testing.T) {
	ctx := context.Background()
	root := newRoot(t)
	cm, _ := fakeCertManagerCA(t, root, false)
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: fakeNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := i.CABundle(ctx); err == nil || !strings.Contains(err.Error(), "no CA known yet") {
			t.Fatalf("CABundle from an issuer without status.ca: err = %v, want no CA known", err)
		}
	}
	if got := requestedNames(t, cm); len(got) != 1 {
		t.Errorf("CertificateRequests %q: one init-cert, then the failure until %s has passed", got, learnRetry)
	}
}
