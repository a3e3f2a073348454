package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestIssuedCertificate(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, 24*time.Hour, t0)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "leaf", Validity: time.Hour, Usage: UsageServer}
	leaf, err := ca.Sign(req, key.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	chainPEM := append(EncodeCertsPEM(leaf), ca.PEMOnly()...)

	for _, tc := range []struct {
		name    string
		certPEM []byte
		key     crypto.Signer
		wantErr string
	}{
		{name: "leaf and chain for the key", certPEM: chainPEM, key: key},
		{name: "no certificate", certPEM: []byte("not PEM"), key: key, wantErr: "no PEM certificate found"},
		{name: "leaf of another key", certPEM: chainPEM, key: other, wantErr: errKeyMismatch.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := IssuedCertificate(tc.certPEM, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(c.CertPEM) != string(chainPEM) || !c.NotAfter.Equal(leaf.NotAfter) || c.CABundle != nil {
				t.Fatalf("got CertPEM equal %v, NotAfter %s (want %s), CABundle %q",
					string(c.CertPEM) == string(chainPEM), c.NotAfter, leaf.NotAfter, c.CABundle)
			}
			back, err := ParseKeyPEM(c.KeyPEM)
			if err != nil || !KeyMatches(back, leaf.PublicKey) {
				t.Fatalf("KeyPEM does not hold the leaf's key: %v", err)
			}
		})
	}
}

func TestIssueRemote(t *testing.T) {
	ca := mustRoot(t, ECDSAP256, 24*time.Hour, t0)
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	// What a CA returned for req (Vault adds the common name to the DNS names).
	signed := func(req Request) *Certificate {
		leaf, err := ca.Sign(req, key.Public(), t0)
		if err != nil {
			t.Fatal(err)
		}
		return &Certificate{CertPEM: EncodeCertsPEM(leaf)}
	}
	valid := Request{CommonName: "leaf", DNSNames: []string{"leaf.svc"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, Validity: time.Hour, Usage: UsageServer}
	issued := signed(Request{CommonName: "leaf", DNSNames: []string{"LEAF.svc", "leaf"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, Validity: time.Hour, Usage: UsageServer})
	down := errors.New("CA unreachable")
	for _, tc := range []struct {
		name       string
		req        Request
		returned   *Certificate // nil: issued
		issueErr   error
		wantCalled bool
		wantErr    string
	}{
		{name: "issued", req: valid, wantCalled: true},
		// A remote CA that rewrote the subject (an issuer's template): the
		// pod would get another identity.
		{name: "another common name", req: valid, wantCalled: true,
			returned: signed(Request{CommonName: "other", DNSNames: []string{"leaf.svc"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, Validity: time.Hour, Usage: UsageServer}),
			wantErr:  `remote: issue leaf: the CA returned a certificate for common name "other", not the "leaf" asked for`},
		{name: "a DNS name dropped", req: valid, wantCalled: true,
			returned: signed(Request{CommonName: "leaf", IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, Validity: time.Hour, Usage: UsageServer}),
			wantErr:  `remote: issue leaf: the CA returned a certificate for "leaf" without the DNS name "leaf.svc" asked for (it has [])`},
		{name: "an IP address dropped", req: valid, wantCalled: true,
			returned: signed(Request{CommonName: "leaf", DNSNames: []string{"leaf.svc"}, Validity: time.Hour, Usage: UsageServer}),
			wantErr:  `remote: issue leaf: the CA returned a certificate for "leaf" without the IP address 10.0.0.1 asked for (it has [])`},
		{name: "invalid request never leaves the process", req: Request{CommonName: "leaf", Usage: UsageServer},
			wantErr: `remote: issue leaf: request for "leaf": Validity must be positive, got 0s`},
		{name: "provider failure names provider and certificate", req: valid, issueErr: down, wantCalled: true,
			wantErr: "remote: issue leaf: CA unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			c, err := IssueRemote(context.Background(), "remote", tc.req, func(context.Context, Request) (*Certificate, error) {
				called = true
				if tc.issueErr != nil {
					return nil, tc.issueErr
				}
				if tc.returned != nil {
					return tc.returned, nil
				}
				return issued, nil
			})
			if called != tc.wantCalled {
				t.Fatalf("issue called = %v, want %v", called, tc.wantCalled)
			}
			if tc.wantErr == "" {
				if err != nil || c != issued {
					t.Fatalf("got (%v, %v), want the issued certificate", c, err)
				}
				return
			}
			var pe *ProviderError
			if err == nil || err.Error() != tc.wantErr || !errors.As(err, &pe) || c != nil {
				t.Fatalf("got (%v, %v), want ProviderError %q", c, err, tc.wantErr)
			}
			if tc.issueErr != nil && !errors.Is(err, tc.issueErr) {
				t.Fatalf("%v does not wrap %v", err, tc.issueErr)
			}
		})
	}
}

func TestCappedValidity(t *testing.T) {
	const day, decade = 24 * time.Hour, 87600 * time.Hour
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		requested time.Duration
		caLeft    time.Duration // caNotAfter - now
		want      time.Duration
	}{
		{"CA outlives the request", day, decade, day},
		{"CA ends exactly RemoteCASkew after the request", day, day + RemoteCASkew, day},
		// FSM's documented root (ttl 87600h) was generated before the leaf.
		{"decade asked of a decade root made 2s earlier", decade, decade - 2*time.Second, decade - 2*time.Second - RemoteCASkew},
		{"24h asked, root has 10h left", day, 10 * time.Hour, 10*time.Hour - RemoteCASkew},
		{"sub-second room is truncated to whole seconds", day, time.Hour + 1500*time.Millisecond, time.Hour + time.Second - RemoteCASkew},
		{"one second of room", day, RemoteCASkew + time.Second, time.Second},
		// No TTL fits: the CA's answer is left to say so.
		{"CA ends within RemoteCASkew", day, RemoteCASkew + 999*time.Millisecond, day},
		{"CA expired", day, -time.Hour, day},
	} {
		if got := CappedValidity(tc.requested, now, now.Add(tc.caLeft)); got != tc.want {
			t.Errorf("%s: CappedValidity(%s, CA ends in %s) = %s, want %s", tc.name, tc.requested, tc.caLeft, got, tc.want)
		}
	}
	// Unknown CA (zero time): the request is sent as asked.
	if got := CappedValidity(day, now, time.Time{}); got != day {
		t.Errorf("CappedValidity with no CA = %s, want %s", got, day)
	}
}

func TestEarliestCap(t *testing.T) {
	const day = 24 * time.Hour
	now := time.Now()
	ca := func(left time.Duration) *x509.Certificate { return &x509.Certificate{NotAfter: now.Add(left)} }
	for _, tc := range []struct {
		name string
		cas  []*x509.Certificate
		want time.Duration
	}{
		{"none", nil, day},
		{"all outlive it", []*x509.Certificate{ca(2 * day), ca(3 * day)}, day},
		{"the earliest wins", []*x509.Certificate{ca(2 * day), ca(5 * time.Hour), ca(10 * time.Hour)}, 5*time.Hour - RemoteCASkew},
		// One about to expire cannot be the signer of a certificate Vault
		// would sign with: it is skipped, not turned into a zero TTL.
		{"one ends within RemoteCASkew", []*x509.Certificate{ca(30 * time.Second), ca(5 * time.Hour)}, 5*time.Hour - RemoteCASkew},
	} {
		got := EarliestCap(day, now, tc.cas)
		if got != tc.want && got != tc.want-time.Second { // now's sub-second part is truncated
			t.Errorf("%s: EarliestCap = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestSignerOf: the signer is found by subject, and by signature when roots
// share a subject (tresor names every root alike).
func TestSignerOf(t *testing.T) {
	a := mustRoot(t, ECDSAP256, 24*time.Hour, t0)
	b := mustRoot(t, ECDSAP256, 24*time.Hour, t0) // same subject as a, another key
	key, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := b.Sign(Request{CommonName: "leaf", Validity: time.Hour, Usage: UsageServer}, key.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Cert.RawSubject) != string(b.Cert.RawSubject) {
		t.Fatal("the two roots were meant to share a subject")
	}
	stranger := &x509.Certificate{RawSubject: []byte("not the issuer")}
	for _, tc := range []struct {
		name       string
		candidates []*x509.Certificate
		want       *x509.Certificate
	}{
		{"none", nil, nil},
		{"only another subject", []*x509.Certificate{stranger}, nil},
		{"one by subject", []*x509.Certificate{stranger, b.Cert}, b.Cert},
		// Documented: the signature is checked only to choose among several.
		{"one by subject, another key", []*x509.Certificate{stranger, a.Cert}, a.Cert},
		{"two by subject: the one whose key signed", []*x509.Certificate{a.Cert, b.Cert}, b.Cert},
		{"two by subject, neither signed", []*x509.Certificate{a.Cert, a.Cert}, nil},
	} {
		if got := SignerOf(leaf, tc.candidates...); got != tc.want {
			t.Errorf("%s: SignerOf = %v, want %v", tc.name, got, tc.want)
		}
	}
}
