package certstest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

var server = certs.Request{CommonName: "svc.ns.svc", DNSNames: []string{"svc.ns.svc"}, Validity: 24 * time.Hour, Usage: certs.UsageServer}

func leafOf(t *testing.T, c *certs.Certificate) *x509.Certificate {
	t.Helper()
	chain, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return chain[0]
}

func TestIssue(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     certstest.Options
		req      certs.Request
		wantLife time.Duration
		wantAlg  certs.KeyAlgorithm
	}{
		{"defaults: what was asked, backdated a second, ECDSA", certstest.Options{}, server, 24*time.Hour + time.Second, certs.ECDSAP256},
		{"backdated like a Vault role", certstest.Options{Backdate: 30 * time.Second}, server, 24*time.Hour + 30*time.Second, certs.ECDSAP256},
		{"max TTL grants less than asked", certstest.Options{MaxTTL: time.Hour}, server, time.Hour + time.Second, certs.ECDSAP256},
		{"cut at the root's expiry", certstest.Options{RootValidity: 2 * time.Hour}, server, 2*time.Hour + time.Second, certs.ECDSAP256},
		{"the request's key algorithm", certstest.Options{}, func() certs.Request { r := server; r.KeyAlgorithm = certs.ECDSAP384; return r }(), 24*time.Hour + time.Second, certs.ECDSAP384},
		{"pooled keys of the default algorithm", certstest.Options{Algorithm: certs.ECDSAP384, PoolSize: 2}, server, 24*time.Hour + time.Second, certs.ECDSAP384},
		{"recycled keys", certstest.Options{PoolSize: 2, RecycledKeys: 1}, server, 24*time.Hour + time.Second, certs.ECDSAP256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := certstest.MustNew(t, tc.opts)
			c, err := ca.Issue(t.Context(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			leaf := leafOf(t, c)
			// x509 times are whole seconds.
			if life := leaf.NotAfter.Sub(leaf.NotBefore); (life - tc.wantLife).Abs() > 2*time.Second {
				t.Errorf("lifetime %s, want %s", life, tc.wantLife)
			}
			if alg, _ := certs.AlgorithmOf(leaf.PublicKey); alg != tc.wantAlg {
				t.Errorf("key %s, want %s", alg, tc.wantAlg)
			}
			if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, "svc.ns.svc", certs.UsageServer, time.Now()); err != nil {
				t.Error(err)
			}
			if ca.Issued() != 1 {
				t.Errorf("Issued = %d, want 1", ca.Issued())
			}
		})
	}
}

func TestFailIssuance(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	ca.FailIssuance(true)
	var perr *certs.ProviderError
	if _, err := ca.Issue(t.Context(), server); !errors.As(err, &perr) || perr.Provider != certstest.ProviderName {
		t.Fatalf("Issue while failing: err = %v, want a %s ProviderError", err, certstest.ProviderName)
	}
	ca.FailIssuance(false)
	if _, err := ca.Issue(t.Context(), server); err != nil || ca.Issued() != 1 {
		t.Fatalf("Issue after failing: err = %v, Issued = %d", err, ca.Issued())
	}
}

// TestRotation walks the three phases as tresor does: who signs, who is
// trusted, what rootrotation reads and that subscribers hear each change
// (and only changes).
func TestRotation(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	notified := 0
	defer ca.OnBundleChange(func() { notified++ })()
	_, first, _ := ca.Roots()
	bundle := func() []byte { b, _ := ca.CABundle(context.Background()); return b }
	for _, tc := range []struct {
		name                   string
		step                   func(context.Context) error
		wantPhase              rootrotation.Phase
		wantSigner             string // "first" or "second"
		wantTrusted            int
		wantNotified           int
		wantFirstTrusted, noop bool
	}{
		{"activate without a next root: no-op", ca.ActivateNextRoot, rootrotation.PhaseIdle, "first", 1, 0, true, true},
		{"add next root", ca.AddNextRoot, rootrotation.PhaseNextRootAdded, "first", 2, 1, true, false},
		{"add again: no-op", ca.AddNextRoot, rootrotation.PhaseNextRootAdded, "first", 2, 1, true, true},
		{"activate", ca.ActivateNextRoot, rootrotation.PhaseNextRootActive, "second", 2, 2, true, false},
		{"drop previous", ca.DropPreviousRoot, rootrotation.PhaseIdle, "second", 1, 3, false, false},
		{"drop again: no-op", ca.DropPreviousRoot, rootrotation.PhaseIdle, "second", 1, 3, false, true},
	} {
		before, _ := ca.RotationStatus(t.Context())
		if err := tc.step(t.Context()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		st, _ := ca.RotationStatus(t.Context())
		if st.Phase != tc.wantPhase {
			t.Errorf("%s: phase %q, want %q", tc.name, st.Phase, tc.wantPhase)
		}
		if signsFirst := ca.Active().Equal(first); signsFirst != (tc.wantSigner == "first") {
			t.Errorf("%s: the first root signs = %v, want the %s", tc.name, signsFirst, tc.wantSigner)
		}
		b, err := certs.ParseBundle(time.Now(), bundle())
		if err != nil || b.Len() != tc.wantTrusted || b.Contains(first) != tc.wantFirstTrusted {
			t.Errorf("%s: %d roots trusted (first among them: %v), want %d (%v); err %v", tc.name, b.Len(), b.Contains(first), tc.wantTrusted, tc.wantFirstTrusted, err)
		}
		if notified != tc.wantNotified {
			t.Errorf("%s: subscribers told %d times, want %d", tc.name, notified, tc.wantNotified)
		}
		if tc.noop != st.Since.Equal(before.Since) {
			t.Errorf("%s: Since %s then %s; a no-op must keep it, a change restart it", tc.name, before.Since, st.Since)
		}
		c, err := ca.Issue(t.Context(), server)
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.ChainsTo(c.CertPEM, ca.Active(), time.Now()); err != nil {
			t.Errorf("%s: issued by another root than Active: %v", tc.name, err)
		}
	}
}

func TestReplace(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	if err := ca.AddNextRoot(t.Context()); err != nil {
		t.Fatal(err)
	}
	old, _ := ca.CABundle(t.Context())
	if err := ca.Replace(); err != nil {
		t.Fatal(err)
	}
	now, _ := ca.CABundle(t.Context())
	previous, active, next := ca.Roots()
	if previous != nil || next != nil || bytes.Contains(old, certs.EncodeCertsPEM(active)) || !bytes.Equal(now, certs.EncodeCertsPEM(active)) {
		t.Fatal("Replace must leave exactly one new root, trusted alone")
	}
}

func TestValidCert(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	other := certstest.MustNew(t, certstest.Options{})
	otherBundle, _ := other.CABundle(t.Context())
	c, err := ca.Issue(t.Context(), server)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ca.Issue(t.Context(), server)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		bundle    []byte
		cert, key []byte
		dns       string
		usage     certs.Usage
		at        time.Time
		wantErr   string
	}{
		{"valid", c.CABundle, c.CertPEM, c.KeyPEM, "svc.ns.svc", certs.UsageServer, now, ""},
		{"valid without name check", c.CABundle, c.CertPEM, c.KeyPEM, "", certs.UsageServer, now.Add(23 * time.Hour), ""},
		{"expires before at", c.CABundle, c.CertPEM, c.KeyPEM, "svc.ns.svc", certs.UsageServer, now.Add(25 * time.Hour), "is not valid at"},
		{"wrong name", c.CABundle, c.CertPEM, c.KeyPEM, "other.ns.svc", certs.UsageServer, now, "not other.ns.svc"},
		{"wrong usage", c.CABundle, c.CertPEM, c.KeyPEM, "", certs.UsageClient, now, "not valid for client auth"},
		{"server and client, server only issued", c.CABundle, c.CertPEM, c.KeyPEM, "", certs.UsageBoth, now, "not valid for client auth"},
		{"foreign CA", otherBundle, c.CertPEM, c.KeyPEM, "", certs.UsageServer, now, "does not chain to the CA bundle"},
		{"key of another cert", c.CABundle, c.CertPEM, c2.KeyPEM, "", certs.UsageServer, now, "private key does not match"},
		{"no cert", c.CABundle, nil, c.KeyPEM, "", certs.UsageServer, now, "certificate: no PEM certificate"},
		{"no key", c.CABundle, c.CertPEM, []byte("x"), "", certs.UsageServer, now, "private key: no PEM private key"},
		{"bad bundle", []byte("x"), c.CertPEM, c.KeyPEM, "", certs.UsageServer, now, "CA bundle: CA bundle 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := certstest.ValidCert(tc.bundle, tc.cert, tc.key, tc.dns, tc.usage, tc.at)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
