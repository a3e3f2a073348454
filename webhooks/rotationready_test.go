package webhooks

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestServingAcrossCertRotation: a renewed serving cert is swapped into the
// listener by the Secret's watch on every replica at about the same moment,
// and the handshake proof for it runs only after the swap. Until that proof
// answers (milliseconds, up to handshakeTimeout on a starved node), the
// pod's /readyz must keep the pass the listener earned with the previous
// cert: failing it there, with the chart's failureThreshold 1, takes every
// replica out of the injector's endpoints at once and fails pod creates
// (failurePolicy Fail). A failed proof of the new cert, a stale pass and a
// process that never passed still fail, and so does a new cert
// swapped in after the listener's last handshake failed.
func TestServingAcrossCertRotation(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	w := Webhook{Name: "injector", Port: 9090, ServiceName: "fsm-injector", SecretName: "injector-cert"}
	opts := Options{Namespace: "fsm-system", ResyncInterval: DefaultResyncInterval}
	h := &hook{
		s:    &Server{opts: opts},
		w:    w,
		spec: w.ServingSpec(opts),
		src:  servingcert.NewSource(fake.NewSimpleClientset(), opts.Namespace, w.SecretName, logr.Discard()),
	}
	rv := 0
	rotate := func() *servingcert.Loaded {
		t.Helper()
		c, err := ca.Issue(context.Background(), h.spec.Request())
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := certs.ParseCertsPEM(c.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		root, err := servingcert.IssuingRoots(leaf, c.CABundle, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rv++
		h.src.Offer(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: opts.Namespace, Name: w.SecretName, ResourceVersion: strconv.Itoa(rv)},
			Data:       map[string][]byte{servingcert.KeyCA: root, servingcert.KeyCert: c.CertPEM, servingcert.KeyKey: c.KeyPEM},
		})
		return h.src.Current()
	}
	expect := func(what string, err error, want string) {
		t.Helper()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: serving = %v, want nil", what, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: serving = %v, want an error containing %q", what, err, want)
		}
	}

	old := rotate()
	h.handshakeProof.begin(old.Fingerprint)
	expect("first cert, first proof running", h.serving(time.Now()), "not proven yet")
	h.handshakeProof.end(old.Fingerprint, nil)
	expect("first cert proven", h.serving(time.Now()), "")

	renewed := rotate()
	if renewed.Fingerprint == old.Fingerprint {
		t.Fatal("the renewal did not change the served cert")
	}
	expect("renewed cert loaded, its proof not started", h.serving(time.Now()), "")
	h.handshakeProof.begin(renewed.Fingerprint)
	expect("renewed cert, its proof running", h.serving(time.Now()), "")
	expect("renewed cert, the previous pass stale", h.serving(time.Now().Add(time.Minute)), "not proven yet")
	h.handshakeProof.end(renewed.Fingerprint, errors.New("x509: certificate signed by unknown authority"))
	expect("renewed cert failed its proof", h.serving(time.Now()), "unknown authority")
	h.handshakeProof.end(renewed.Fingerprint, nil)
	expect("renewed cert proven", h.serving(time.Now()), "")

	// A listener whose last handshake failed has nothing to bridge with.
	h.handshakeProof.end(renewed.Fingerprint, errors.New("connection refused"))
	rotate()
	expect("cert swapped after a failed proof", h.serving(time.Now()), "not proven yet")
}
