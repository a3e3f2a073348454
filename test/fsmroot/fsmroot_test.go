package fsmroot

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

// The root is a CA whose PEM pair loads, laid out under FSM's keys, its
// expiration what FSM would write for it.
func TestRootAsFSMStoresIt(t *testing.T) {
	r := Must(t)
	if !r.Cert.IsCA || r.Cert.Subject.CommonName != "fsm-ca.flomesh.io" {
		t.Errorf("root: CA %v, CN %q", r.Cert.IsCA, r.Cert.Subject.CommonName)
	}
	if _, err := tls.X509KeyPair(r.CertPEM, r.KeyPEM); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
	if !bytes.Contains(r.KeyPEM, []byte("BEGIN PRIVATE KEY")) {
		t.Errorf("key is not PKCS#8 PEM: %.40q", r.KeyPEM)
	}
	d := r.SecretData()
	if !bytes.Equal(d["ca.crt"], r.CertPEM) || !bytes.Equal(d["private.key"], r.KeyPEM) {
		t.Errorf("fsm-ca-bundle keys: %v", d)
	}
	exp, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", string(d["expiration"]))
	if err != nil || !exp.Equal(r.Cert.NotAfter) {
		t.Errorf("expiration %q (%v), want %s", d["expiration"], err, r.Cert.NotAfter)
	}
	if _, err := r.Cert.Verify(x509.VerifyOptions{Roots: func() *x509.CertPool { p := x509.NewCertPool(); p.AddCert(r.Cert); return p }()}); err != nil {
		t.Errorf("self-signed root does not verify: %v", err)
	}
}
