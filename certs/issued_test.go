package certs

import (
	"context"
	"crypto"
	"errors"
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
	valid := Request{CommonName: "leaf", Validity: time.Hour, Usage: UsageServer}
	issued := &Certificate{CertPEM: []byte("cert")}
	down := errors.New("CA unreachable")
	for _, tc := range []struct {
		name       string
		req        Request
		issueErr   error
		wantCalled bool
		wantErr    string
	}{
		{name: "issued", req: valid, wantCalled: true},
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
