package certmanager

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestCABundleWaitingForLearnCAHonoursContext: while one caller learns the
// CA from an init-cert that the issuer is slow to sign, another CABundle
// caller (a metrics scrape with its few seconds, a caBundle reconcile) gives
// up at its own deadline instead of waiting for the first caller's request.
func TestCABundleWaitingForLearnCAHonoursContext(t *testing.T) {
	cm := newFakeClientset() // nobody signs
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: fakeNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	firstCtx, cancelFirst := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFirst()
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, _ = i.CABundle(firstCtx)
	}()
	// Let the first caller take the learning lock and create its init-cert.
	deadline := time.Now().Add(30 * time.Second)
	for len(requestedNames(t, cm)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first caller never asked for an init-cert")
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = i.CABundle(ctx)
	took := time.Since(start)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CABundle while another caller learns the CA: err = %v, want its own deadline exceeded", err)
	}
	if took > 10*time.Second { // the first caller waits a minute
		t.Errorf("CABundle with a 300ms deadline returned after %s: it waited for the other caller's init-cert", took.Round(time.Millisecond))
	}
	cancelFirst()
	<-firstDone
}

// TestLearnCACallerDeadlineNotCached: an init-cert given up at its caller's
// own short deadline (a metrics scrape) proves nothing about the issuer, so
// the next caller asks again rather than getting that failure for
// learnRetry; an issuer that answers then gives the CA at once.
func TestLearnCACallerDeadlineNotCached(t *testing.T) {
	cm := newFakeClientset() // nobody signs yet
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: fakeNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := i.CABundle(short); err == nil {
		t.Fatal("CABundle with nobody signing succeeded")
	}
	root := newRoot(t)
	runIssuer(t, cm, fakeNS, func(_ int, cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) (bool, error) {
		if len(cr.Status.Certificate) > 0 {
			return false, nil
		}
		leaf, err := root.Sign(certs.Request{CommonName: csr.Subject.CommonName, Validity: time.Hour, Usage: certs.UsageServer}, csr.PublicKey, time.Now())
		if err != nil {
			return false, err
		}
		cr.Status.Certificate, cr.Status.CA = certs.EncodeCertsPEM(leaf), certs.EncodeCertsPEM(root.Cert)
		cr.Status.Conditions = []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"}}
		return true, nil
	})
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	b, err := i.CABundle(ctx)
	if err != nil {
		t.Fatalf("CABundle once the issuer answers: %v (the first caller's deadline was cached as the issuer's failure)", err)
	}
	if !bytes.Contains(b, certs.EncodeCertsPEM(root.Cert)) {
		t.Errorf("CABundle = %q, want the issuer's root", b)
	}
}
