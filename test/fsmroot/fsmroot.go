// Package fsmroot makes a mesh root CA as FSM v1.5.1's Tresor makes it and
// lays it out in fsm-ca-bundle as FSM does: the one copy the takeover tests
// on the API server (test/chart/install) and on the node (test/node) share.
package fsmroot

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// Root is the mesh root: RSA 2048, the key PKCS#8 "PRIVATE KEY" PEM
// (FSM's pkg/certificate/encode.go).
type Root struct {
	Cert            *x509.Certificate
	Key             *rsa.PrivateKey
	CertPEM, KeyPEM []byte
}

// New makes a root valid for ten years, FSM's default.
func New() (Root, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Root{}, fmt.Errorf("mesh root key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fsm-ca.flomesh.io", Organization: []string{"Flomesh Service Mesh"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(87600 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Root{}, fmt.Errorf("mesh root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Root{}, fmt.Errorf("mesh root certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Root{}, fmt.Errorf("mesh root key: %w", err)
	}
	return Root{Cert: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})}, nil
}

// Must is New failing t.
func Must(t testing.TB) Root {
	t.Helper()
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// SecretData is fsm-ca-bundle in FSM's key layout: ca.crt, private.key and
// expiration (Go's time.Time String form, as FSM writes it).
func (r Root) SecretData() map[string][]byte {
	return map[string][]byte{"ca.crt": r.CertPEM, "private.key": r.KeyPEM,
		"expiration": []byte(r.Cert.NotAfter.UTC().Format("2006-01-02 15:04:05.999999999 -0700 MST"))}
}
