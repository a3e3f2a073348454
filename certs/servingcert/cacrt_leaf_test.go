package servingcert_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestCheckRefusesCACrtHoldingTheLeaf: a Secret whose ca.crt was overwritten with
// its own tls.crt (a hand edit, or a tool that writes the leaf as "ca") holds
// no CA at all. The design says the caBundle is "the PEM of every CA that
// currently signs serving certs ..., never the leaf", and the serving layer
// publishes ca.crt into the caBundle for as long as Check keeps the Secret;
// the README says a renewal "when its ca.crt does not verify its
// tls.crt (e.g. edited by hand)". Check must reject it.
func TestCheckRefusesCACrtHoldingTheLeaf(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted := mustBundle(t, ca)
	data := certstest.ServingSecretData(t, ca, spec)
	data[servingcert.KeyCA] = data[servingcert.KeyCert]
	if v := servingcert.Check(spec, data, trusted, time.Now(), 0); v.OK() {
		bundle, err := servingcert.MergeBundles(time.Now(), trusted, data[servingcert.KeyCA])
		if err != nil {
			t.Fatal(err)
		}
		cs, err := certs.ParseCertsPEM(bundle)
		if err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, c := range cs {
			in = append(in, fmt.Sprintf("%s (IsCA %v)", c.Subject.CommonName, c.IsCA))
		}
		t.Errorf("Check keeps a Secret whose ca.crt is its own leaf (no CA); the caBundle built from it holds %v", in)
	}
}

// TestCheckRefusesCACrtHoldingALeafWithoutBasicConstraints: a leaf signed
// without the basicConstraints extension does not say it is no CA; put in
// ca.crt, it still verifies itself (Go takes a root-pool member as its own
// chain), so only recognising it as tls.crt's leaf refuses it.
func TestCheckRefusesCACrtHoldingALeafWithoutBasicConstraints(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	auth := ca.Authority()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: spec.CommonName()},
		DNSNames:     spec.DNSNames(),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, auth.Cert, key.Public(), auth.Key)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := certs.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ca   []byte
		want servingcert.Reason
	}{
		{"ca.crt is the issuing CA", certs.EncodeCertsPEM(auth.Cert), servingcert.ReasonNone},
		{"ca.crt is the leaf", leafPEM, servingcert.ReasonInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string][]byte{servingcert.KeyCA: tc.ca, servingcert.KeyCert: leafPEM, servingcert.KeyKey: keyPEM}
			if v := servingcert.Check(spec, data, mustBundle(t, ca), now, 0); v.Reason != tc.want {
				t.Fatalf("Check = %q (%s), want %q", v.Reason, v.Detail, tc.want)
			}
		})
	}
}
