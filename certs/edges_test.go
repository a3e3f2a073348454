package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRenewedDueAtOnce: a renewal keeping the leaf's NotAfter (no CA
// outlives it) would be due at once when its window, from a NotBefore
// backdated ClockSkew, opens by now. With fraction 1 and jitter 1/4 it opens
// three quarters into the life, so the limit is NotAfter 100s from now.
func TestRenewedDueAtOnce(t *testing.T) {
	r := Renewal{Fraction: 1, Jitter: 0.25}
	for _, tc := range []struct {
		name string
		left time.Duration
		want bool
	}{
		{"1 min left", time.Minute, true},
		{"100 s left (the limit)", 100 * time.Second, true},
		{"101 s left", 101 * time.Second, false},
		{"an hour left", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(tc.left)}
			if got := r.RenewedDueAtOnce(leaf, t0); got != tc.want {
				t.Fatalf("RenewedDueAtOnce with %s left = %v, want %v", tc.left, got, tc.want)
			}
		})
	}
}

// TestChainsToThroughIntermediate: the certificates after the leaf in the
// PEM are the intermediates that link it to the root.
func TestChainsToThroughIntermediate(t *testing.T) {
	root := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	interCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewAuthority(interCert, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustIssue(t, inter, Request{CommonName: "svc.ns.svc", Validity: time.Hour, Usage: UsageServer}, ECDSAP256, t0)
	leafOnly, err := ParseCertsPEM(leaf.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := ChainsTo(append(EncodeCertsPEM(leafOnly[0]), EncodeCertsPEM(interCert)...), root.Cert, t0); err != nil {
		t.Errorf("leaf with its intermediate: %v", err)
	}
	if err := ChainsTo(EncodeCertsPEM(leafOnly[0]), root.Cert, t0); err == nil {
		t.Error("leaf without its intermediate chains to the root")
	}
}

// TestParseCertsPEMSkipsOtherBlocks: a PEM holding a key beside the
// certificate (a combined tls file) yields the certificate alone.
func TestParseCertsPEMSkipsOtherBlocks(t *testing.T) {
	root := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	keyPEM, err := EncodeKeyPEM(root.Key)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ParseCertsPEM(append(keyPEM, EncodeCertsPEM(root.Cert)...))
	if err != nil || len(cs) != 1 || !cs[0].Equal(root.Cert) {
		t.Fatalf("ParseCertsPEM(key, cert) = %d certs, %v; want the one certificate", len(cs), err)
	}
}

// TestGenerateKeyDefault: no algorithm means DefaultKeyAlgorithm, RSA 2048.
func TestGenerateKeyDefault(t *testing.T) {
	key, err := GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("GenerateKey(\"\") = %T, want an RSA 2048 key", key)
	}
}

// TestParseBundleOrder: empty or blank inputs are skipped, and CAs come
// oldest NotBefore first, whatever their NotAfter, so the published
// caBundle's bytes do not depend on input order.
func TestParseBundleOrder(t *testing.T) {
	old := mustRoot(t, ECDSAP256, 10*RootCAValidity, t0.Add(-time.Hour))
	young := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	b, err := ParseBundle(t0, []byte("\n  \n"), EncodeCertsPEM(young.Cert), nil, EncodeCertsPEM(old.Cert))
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	want := []*x509.Certificate{old.Cert, young.Cert}
	if got := b.Certificates(); !slices.EqualFunc(got, want, (*x509.Certificate).Equal) {
		t.Fatalf("bundle holds %d CAs not in NotBefore order", len(got))
	}
}

// TestUsageExtKeyUsages: the extended key usages written into a leaf.
func TestUsageExtKeyUsages(t *testing.T) {
	for _, tc := range []struct {
		u    Usage
		want []x509.ExtKeyUsage
	}{
		{UsageServer, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{UsageClient, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{UsageBoth, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		if got := tc.u.ExtKeyUsages(); !slices.Equal(got, tc.want) {
			t.Errorf("%s.ExtKeyUsages() = %v, want %v", tc.u, got, tc.want)
		}
	}
}

// TestAuthorityRefuses: a CA that may not sign certificates, and a root
// without a lifetime, are refused with the reason.
func TestAuthorityRefuses(t *testing.T) {
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "no-certsign"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthority(cert, key); err == nil || !strings.Contains(err.Error(), `"no-certsign" lacks the keyCertSign key usage`) {
		t.Errorf("NewAuthority of a CA without keyCertSign: err = %v", err)
	}
	if _, err := NewRootAuthority(ECDSAP256, 0, t0); err == nil || !strings.Contains(err.Error(), "validity must be positive, got 0s") {
		t.Errorf("NewRootAuthority with validity 0: err = %v", err)
	}
}
