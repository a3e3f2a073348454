package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLeafTemplate: what a signed leaf states, exactly: key usages for its
// key type (digitalSignature always, keyEncipherment for RSA only), only the
// extended usages asked for (a server certificate is no client one), the
// names and addresses asked for in order, and a NotBefore backdated by the
// authority's Backdate, ClockSkew when it is zero or negative.
func TestLeafTemplate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ca, leaf    KeyAlgorithm
		usage       Usage
		backdate    time.Duration
		wantUsage   x509.KeyUsage
		wantExt     []x509.ExtKeyUsage
		wantBackoff time.Duration
	}{
		{"ecdsa server", ECDSAP256, ECDSAP256, UsageServer, 0,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ClockSkew},
		{"ecdsa client from an RSA CA", RSA2048, ECDSAP384, UsageClient, 0,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, ClockSkew},
		{"rsa both", ECDSAP256, RSA2048, UsageBoth, 0,
			x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, ClockSkew},
		{"backdated a second", ECDSAP256, ECDSAP256, UsageServer, time.Second,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, time.Second},
		{"negative backdate means ClockSkew", ECDSAP256, ECDSAP256, UsageServer, -time.Minute,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ClockSkew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := *mustRoot(t, tc.ca, 48*time.Hour, t0)
			ca.Backdate = tc.backdate
			key, err := GenerateKey(tc.leaf)
			if err != nil {
				t.Fatal(err)
			}
			req := Request{
				CommonName:  "p.sidecar.sa.ns.cluster.local",
				DNSNames:    []string{"p.sidecar.sa.ns.cluster.local", "p.ns.svc"},
				IPAddresses: []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("fd00::1")},
				Validity:    time.Hour,
				Usage:       tc.usage,
			}
			leaf, err := ca.Sign(req, key.Public(), t0)
			if err != nil {
				t.Fatal(err)
			}
			if leaf.KeyUsage != tc.wantUsage {
				t.Errorf("KeyUsage = %b, want %b", leaf.KeyUsage, tc.wantUsage)
			}
			if !slices.Equal(leaf.ExtKeyUsage, tc.wantExt) {
				t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, tc.wantExt)
			}
			if !slices.Equal(leaf.DNSNames, req.DNSNames) {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, req.DNSNames)
			}
			if !slices.EqualFunc(leaf.IPAddresses, req.IPAddresses, net.IP.Equal) {
				t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, req.IPAddresses)
			}
			if want := t0.Add(-tc.wantBackoff); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s (backdated %s)", leaf.NotBefore, want, tc.wantBackoff)
			}
			if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("the CA does not verify the leaf: %v", err)
			}
		})
	}
}

// TestLeafSerials: every leaf gets its own positive serial of up to 128
// random bits (RFC 5280: unique per issuer, at most 20 octets; TLS clients
// such as NSS refuse two certificates with one issuer and serial).
func TestLeafSerials(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, 48*time.Hour, t0)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	seen := map[string]bool{}
	widest := 0
	for range n {
		leaf, err := ca.Sign(Request{CommonName: "x", Validity: time.Hour, Usage: UsageServer}, key.Public(), t0)
		if err != nil {
			t.Fatal(err)
		}
		s := leaf.SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("serial %s is not a positive number of at most 128 bits", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s.String()] = true
		widest = max(widest, s.BitLen())
	}
	// Uniform over 128 bits: all 16 below 2^120 has odds 2^-128.
	if widest <= 120 {
		t.Errorf("the widest of %d serials has %d bits, want 128 random bits", n, widest)
	}
}

// TestNewAuthorityChecks: which certificate and key pairs may sign leaves.
func TestNewAuthorityChecks(t *testing.T) {
	ecCA := mustRoot(t, ECDSAP256, time.Hour, t0)
	rsaCA := mustRoot(t, RSA2048, time.Hour, t0)
	leafKey, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ecCA.Sign(Request{CommonName: "leaf.ns.svc", Validity: time.Hour, Usage: UsageServer}, leafKey.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	// A CA without a keyUsage extension (RFC 5280 lets a CA omit it).
	noUsageKey, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	noUsage := selfSigned(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "no-key-usage"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
	}, noUsageKey)
	if noUsage.KeyUsage != 0 {
		t.Fatalf("test CA has KeyUsage %b, want none", noUsage.KeyUsage)
	}
	// The CA's public key with its scalar plus the curve order: the same
	// key mathematically, but not a valid encoding of one.
	ecKey := ecCA.Key.(*ecdsa.PrivateKey)
	outOfRange := &ecdsa.PrivateKey{PublicKey: ecKey.PublicKey, //nolint:staticcheck // the malformed key under test
		D: new(big.Int).Add(ecKey.D, ecKey.Curve.Params().N)} //nolint:staticcheck // the malformed key under test

	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		key     crypto.Signer
		wantErr string // empty: accepted
	}{
		{"ecdsa CA with its key", ecCA.Cert, ecCA.Key, ""},
		{"rsa CA with its key", rsaCA.Cert, rsaCA.Key, ""},
		{"CA without a keyUsage extension", noUsage, noUsageKey, ""},
		{"no certificate", nil, ecCA.Key, "CA certificate and key are both required"},
		{"no key", ecCA.Cert, nil, "CA certificate and key are both required"},
		{"a leaf stating CA:FALSE", leaf, leafKey, `certificate "leaf.ns.svc" is not a CA`},
		{"rsa CA with another key", rsaCA.Cert, mustRoot(t, RSA2048, time.Hour, t0).Key, `private key does not match CA certificate "fsm-ca.flomesh.io"`},
		{"ecdsa scalar out of range", ecCA.Cert, outOfRange, `private key does not match CA certificate "fsm-ca.flomesh.io"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthority(tc.cert, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			leaf, err := a.Sign(Request{CommonName: "x", Validity: time.Minute, Usage: UsageServer}, leafKey.Public(), t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := leaf.CheckSignatureFrom(tc.cert); err != nil {
				t.Fatalf("the CA does not verify its leaf: %v", err)
			}
		})
	}
}

// TestIssueCopiesCABundle: the issued Certificate owns its CA bundle: a
// caller reusing its buffer does not change what was issued.
func TestIssueCopiesCABundle(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, time.Hour, t0)
	bundle := EncodeCertsPEM(ca.Cert)
	want := string(bundle)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(Request{CommonName: "x", Validity: time.Minute, Usage: UsageClient}, key, bundle, t0)
	if err != nil {
		t.Fatal(err)
	}
	clear(bundle)
	if string(c.CABundle) != want {
		t.Fatal("Certificate.CABundle changed with the caller's buffer")
	}
}

func selfSigned(t *testing.T, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestSignRefusesInvalidRequest: Sign and Issue check the request before
// signing: a leaf without extended usages or with an empty name is never
// made.
func TestSignRefusesInvalidRequest(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, time.Hour, t0)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		req     Request
		wantErr string
	}{
		{"no usage", Request{CommonName: "x", Validity: time.Minute}, `request for "x": Usage must be server, client or both, got Usage(0)`},
		{"empty DNS name", Request{CommonName: "x", DNSNames: []string{""}, Validity: time.Minute, Usage: UsageServer}, `request for "x": DNSNames[0] is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.Sign(tc.req, key.Public(), t0); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Sign: err = %v, want it to contain %q", err, tc.wantErr)
			}
			if _, err := ca.Issue(tc.req, key, nil, t0); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Issue: err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
