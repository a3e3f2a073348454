package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func mustRoot(t testing.TB, alg KeyAlgorithm, validity time.Duration, now time.Time) *Authority {
	t.Helper()
	a, err := NewRootAuthority(alg, validity, now)
	if err != nil {
		t.Fatalf("NewRootAuthority: %v", err)
	}
	return a
}

func mustIssue(t testing.TB, ca *Authority, req Request, alg KeyAlgorithm, now time.Time) *Certificate {
	t.Helper()
	key, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(req, key, EncodeCertsPEM(ca.Cert), now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return c
}

func TestParseKeyAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    KeyAlgorithm
		wantErr bool
	}{
		{"RSA2048", RSA2048, false},
		{"rsa-4096", RSA4096, false},
		{" ecdsa_p256 ", ECDSAP256, false},
		{"ECDSAP384", ECDSAP384, false},
		{"RSA1024", "", true},
		{"ed25519", "", true},
		{"", "", true},
	} {
		got, err := ParseKeyAlgorithm(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseKeyAlgorithm(%q) = %q, %v; want %q, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("error %q does not name the value %q", err, tc.in)
		}
	}
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	for _, alg := range KeyAlgorithms {
		if testing.Short() && (alg == RSA3072 || alg == RSA4096) {
			continue
		}
		t.Run(string(alg), func(t *testing.T) {
			key, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AlgorithmOf(key.Public())
			if err != nil || got != alg {
				t.Fatalf("AlgorithmOf = %q, %v; want %q", got, err, alg)
			}
			p, err := EncodeKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseKeyPEM(p)
			if err != nil {
				t.Fatal(err)
			}
			if !KeyMatches(back, key.Public()) {
				t.Fatal("parsed key does not match the generated one")
			}
		})
	}
	if _, err := GenerateKey("DSA1024"); err == nil {
		t.Fatal("GenerateKey accepted an unknown algorithm")
	}
}

// TestWithEncodedPEM: a key carrying its PEM encodes, signs and certifies as
// the plain key does, and a caller modifying one encoding does not change the
// next.
func TestWithEncodedPEM(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, time.Hour, t0)
	for _, alg := range []KeyAlgorithm{ECDSAP256, RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			plain, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			want, err := EncodeKeyPEM(plain)
			if err != nil {
				t.Fatal(err)
			}
			key, err := WithEncodedPEM(plain)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := WithEncodedPEM(key); again != key {
				t.Error("WithEncodedPEM re-encoded a key that carries its PEM")
			}
			if !KeyMatches(key, plain.Public()) {
				t.Fatal("the wrapped key has another public key")
			}
			got, err := EncodeKeyPEM(key)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("EncodeKeyPEM = %q, %v; want the plain key's %q", got, err, want)
			}
			got[len(got)/2] ^= 0xff
			if again, _ := EncodeKeyPEM(key); !bytes.Equal(again, want) {
				t.Fatal("modifying one encoding changed the next")
			}
			c, err := ca.Issue(Request{CommonName: "leaf", Validity: time.Hour, Usage: UsageBoth}, key, EncodeCertsPEM(ca.Cert), t0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
				t.Fatalf("issued certificate and key do not pair: %v", err)
			}
		})
	}
}

func TestParseKeyPEMFormats(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"pkcs1", pkcs1, ""},
		{"sec1 after EC PARAMETERS", append(params, sec1...), ""},
		{"empty", nil, "no PEM private key"},
		{"not pem", []byte("hello"), "no PEM private key"},
		{"garbage in block", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "parsing PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyPEM(tc.in)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	ok := Request{CommonName: "a.b", Validity: time.Hour, Usage: UsageServer}
	for _, tc := range []struct {
		name    string
		mutate  func(*Request)
		wantErr string
	}{
		{"ok", func(*Request) {}, ""},
		{"only SANs", func(r *Request) { r.CommonName = ""; r.DNSNames = []string{"x"} }, ""},
		{"only an IP", func(r *Request) { r.CommonName = ""; r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }, ""},
		{"server and an unknown bit", func(r *Request) { r.Usage = UsageServer | 4 }, "got Usage(5)"},
		{"no names", func(r *Request) { r.CommonName = "" }, "all empty"},
		{"zero validity", func(r *Request) { r.Validity = 0 }, "Validity must be positive, got 0s"},
		{"no usage", func(r *Request) { r.Usage = 0 }, "Usage must be server, client or both, got Usage(0)"},
		{"bad usage bits", func(r *Request) { r.Usage = 8 }, "got Usage(8)"},
		{"empty SAN", func(r *Request) { r.DNSNames = []string{"x", ""} }, "DNSNames[1] is empty"},
		{"bad key alg", func(r *Request) { r.KeyAlgorithm = "RSA1024" }, `KeyAlgorithm: unknown key algorithm "RSA1024"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mutate(&r)
			err := r.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestRootAuthority(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	c := ca.Cert
	if c.Subject.String() != "CN=fsm-ca.flomesh.io,O=Flomesh Service Mesh,L=CA,C=US" {
		t.Errorf("subject = %s", c.Subject)
	}
	if !c.IsCA || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("IsCA=%v KeyUsage=%v", c.IsCA, c.KeyUsage)
	}
	if got := c.NotAfter.Sub(t0); got != RootCAValidity {
		t.Errorf("root lifetime from now = %s, want %s", got, RootCAValidity)
	}
	if c.SerialNumber.BitLen() > 128 || c.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if _, err := NewAuthority(c, mustRoot(t, ECDSAP256, time.Hour, t0).Key); err == nil {
		t.Error("NewAuthority accepted a key that does not match")
	}
}

// TestIssueNotAfterIsTheCertificates: Issue does not parse what it signed,
// so its NotAfter must be exactly what parsing the certificate gives (whole
// seconds, UTC), from a clock with nanoseconds, a monotonic reading and a
// zone, and when cut at the CA's NotAfter.
func TestIssueNotAfterIsTheCertificates(t *testing.T) {
	now := time.Now().In(time.FixedZone("UTC+5:30", 5*3600+1800)).Add(123456789 * time.Nanosecond)
	ca := mustRoot(t, ECDSAP256, 2*time.Hour, now)
	for _, validity := range []time.Duration{time.Hour + 999*time.Millisecond, 3 * time.Hour} {
		c := mustIssue(t, ca, Request{CommonName: "leaf", Validity: validity, Usage: UsageBoth}, ECDSAP256, now)
		chain, err := ParseCertsPEM(c.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		if c.NotAfter != chain[0].NotAfter {
			t.Errorf("validity %s: Certificate.NotAfter = %#v, the certificate says %#v", validity, c.NotAfter, chain[0].NotAfter)
		}
	}
}

func TestAuthoritySign(t *testing.T) {
	ca := mustRoot(t, RSA2048, 48*time.Hour, t0)
	bundle := NewBundle(t0, ca.Cert)
	for _, tc := range []struct {
		name         string
		req          Request
		alg          KeyAlgorithm
		backdate     time.Duration
		wantLifetime time.Duration
		wantKeyEnc   bool
	}{
		{"server rsa", Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc", "fsm-injector"}, Validity: time.Hour, Usage: UsageServer}, RSA2048, 0, time.Hour + ClockSkew, true},
		{"both ecdsa with IP", Request{CommonName: "p.sidecar.sa.ns.cluster.local", DNSNames: []string{"p.sidecar.sa.ns.cluster.local"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, Organization: RootOrganization, Validity: 90 * time.Second, Usage: UsageBoth}, ECDSAP256, 0, 90*time.Second + ClockSkew, false},
		{"clamped to CA", Request{CommonName: "long", Validity: RootCAValidity, Usage: UsageClient}, ECDSAP256, 0, 48*time.Hour + ClockSkew, false},
		{"backdated a second", Request{CommonName: "short", Validity: 20 * time.Second, Usage: UsageServer}, ECDSAP256, time.Second, 21 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer := *ca
			signer.Backdate = tc.backdate
			c := mustIssue(t, &signer, tc.req, tc.alg, t0)
			chain, err := ParseCertsPEM(c.CertPEM)
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if err := bundle.VerifyAt(t0, leaf); err != nil {
				t.Fatal(err)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tc.wantLifetime {
				t.Errorf("lifetime = %s, want %s", got, tc.wantLifetime)
			}
			if !c.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("Certificate.NotAfter = %s, leaf says %s", c.NotAfter, leaf.NotAfter)
			}
			if leaf.Subject.CommonName != tc.req.CommonName || strings.Join(leaf.DNSNames, ",") != strings.Join(tc.req.DNSNames, ",") {
				t.Errorf("names = %q %q", leaf.Subject.CommonName, leaf.DNSNames)
			}
			if len(leaf.IPAddresses) != len(tc.req.IPAddresses) {
				t.Errorf("IPs = %v", leaf.IPAddresses)
			}
			if got := leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != tc.wantKeyEnc {
				t.Errorf("keyEncipherment = %v, want %v", got, tc.wantKeyEnc)
			}
			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Errorf("leaf basicConstraints: valid %v, CA %v; want CA:FALSE stated", leaf.BasicConstraintsValid, leaf.IsCA)
			}
			if got := strings.Join(leaf.Subject.Organization, ","); got != tc.req.Organization {
				t.Errorf("subject organization = %q, want %q", got, tc.req.Organization)
			}
			if alg, _ := AlgorithmOf(leaf.PublicKey); alg != tc.alg {
				t.Errorf("leaf key = %s, want %s", alg, tc.alg)
			}
			for _, u := range tc.req.Usage.ExtKeyUsages() {
				opts := x509.VerifyOptions{Roots: bundle.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{u}}
				if _, err := leaf.Verify(opts); err != nil {
					t.Errorf("not valid for ext key usage %d: %v", u, err)
				}
			}
			if key, err := ParseKeyPEM(c.KeyPEM); err != nil || !KeyMatches(key, leaf.PublicKey) {
				t.Errorf("KeyPEM is not the leaf's key (parse error %v)", err)
			}
		})
	}
	if _, err := ca.Sign(Request{CommonName: "x", Validity: time.Hour, Usage: UsageServer}, ca.Key.Public(), t0.Add(49*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("signing with an expired CA: err = %v", err)
	}
	if _, err := ca.Sign(Request{CommonName: "x", Validity: time.Hour, Usage: UsageServer}, ca.Key.Public(), ca.Cert.NotAfter); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("signing at the CA's NotAfter (a zero lifetime): err = %v", err)
	}
}

func TestBundle(t *testing.T) {
	old := mustRoot(t, ECDSAP256, time.Hour, t0.Add(-2*time.Hour)) // expired at t0
	a := mustRoot(t, ECDSAP256, RootCAValidity, t0.Add(-time.Hour))
	b := mustRoot(t, ECDSAP256, RootCAValidity, t0)

	b1 := NewBundle(t0, b.Cert, a.Cert, old.Cert, b.Cert)
	b2 := NewBundle(t0, a.Cert, b.Cert)
	if b1.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (duplicate and expired dropped)", b1.Len())
	}
	if !b1.Equal(b2) || string(b1.PEM()) != string(b2.PEM()) {
		t.Fatal("same roots in a different order give different bundles")
	}
	if got := b1.Certificates(); got[0] != a.Cert || got[1] != b.Cert {
		t.Fatal("bundle not ordered oldest first")
	}
	if b1.Contains(old.Cert) || !b1.Contains(a.Cert) {
		t.Fatal("Contains is wrong")
	}
	parsed, err := ParseBundle(t0, b.PEMOnly(), EncodeCertsPEM(a.Cert, old.Cert), nil)
	if err != nil || !parsed.Equal(b1) {
		t.Fatalf("ParseBundle = %v, %v", parsed, err)
	}
	if _, err := ParseBundle(t0, []byte("junk")); err == nil || !strings.Contains(err.Error(), "CA bundle 1: no PEM certificate") {
		t.Fatalf("ParseBundle(junk) err = %v", err)
	}
	merged := NewBundle(t0, a.Cert).Merge(t0, NewBundle(t0, b.Cert))
	if !merged.Equal(b1) {
		t.Fatal("Merge lost a root")
	}

	leafA := mustIssue(t, a, Request{CommonName: "x", Validity: time.Hour, Usage: UsageServer}, ECDSAP256, t0)
	leafOld := mustIssue(t, old, Request{CommonName: "y", Validity: time.Hour, Usage: UsageServer}, ECDSAP256, t0.Add(-90*time.Minute))
	ca, _ := ParseCertsPEM(leafA.CertPEM)
	if err := b1.VerifyAt(t0, ca[0]); err != nil {
		t.Fatalf("leaf of a root in the bundle: %v", err)
	}
	co, _ := ParseCertsPEM(leafOld.CertPEM)
	if err := NewBundle(t0, b.Cert).VerifyAt(t0.Add(-80*time.Minute), co[0]); err == nil {
		t.Fatal("leaf of a foreign root verified")
	}
}

// PEMOnly is a test helper: the authority's certificate as PEM.
func (a *Authority) PEMOnly() []byte { return EncodeCertsPEM(a.Cert) }

// TestSignedOnAClockAheadIsValidAtOnce: a root created and a leaf signed on
// a machine whose clock runs ahead of the cluster's by up to ClockSkew (the
// tolerance VerifyTime grants a remote CA) are valid at once where the
// clock is right, checked as the apiserver and sidecars check them: plain
// x509 at their own now, with no allowance. Backdated a minute only, a
// serving cert that a replica 3 minutes ahead signed outside a rotation was
// refused by the apiserver for 2 minutes.
func TestSignedOnAClockAheadIsValidAtOnce(t *testing.T) {
	req := Request{CommonName: "fsm-validator.fsm-system.svc", DNSNames: []string{"fsm-validator.fsm-system.svc"}, Validity: RootCAValidity, Usage: UsageServer}
	for _, tc := range []struct {
		name  string
		ahead time.Duration
	}{
		{"in step", 0},
		{"30 s ahead", 30 * time.Second},
		{"3 min ahead", 3 * time.Minute},
		{"just under ClockSkew ahead", ClockSkew - time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer := t0.Add(tc.ahead)
			ca := mustRoot(t, ECDSAP256, RootCAValidity, signer)
			c := mustIssue(t, ca, req, ECDSAP256, signer)
			chain, err := ParseCertsPEM(c.CertPEM)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: req.CommonName, CurrentTime: t0}); err != nil {
				t.Fatalf("signed on a clock %s ahead, refused at the cluster's now: %v (root from %s, leaf from %s, now %s)",
					tc.ahead, err, ca.Cert.NotBefore.Format(time.RFC3339), chain[0].NotBefore.Format(time.RFC3339), t0.Format(time.RFC3339))
			}
		})
	}
}
