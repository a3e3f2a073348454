package servingcert_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// nearExpiry is a Tresor-like CA (leaves backdated certs.ClockSkew, cut at
// the root's end) in its last 2 minutes: every serving cert it signs is past
// its renewal point from the start, whatever the jitter.
func nearExpiry(t *testing.T) *certstest.CA {
	t.Helper()
	return certstest.MustNew(t, certstest.Options{RootValidity: 2 * time.Minute, Backdate: certs.ClockSkew})
}

// TestCheckFinal: a cert cut at the end of the last CA it can chain to is
// kept past its renewal point (renewing gives the same cert), until it
// expires; a CA in the bundle that outlives it makes it due as before.
func TestCheckFinal(t *testing.T) {
	ca := nearExpiry(t)
	later := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted := mustBundle(t, ca)
	data := certstest.ServingSecretData(t, ca, spec)
	leaf, err := certs.ParseCertsPEM(data[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if due := (certs.Renewal{}).At(leaf[0]); now.Before(due) {
		t.Fatalf("fixture: the cert is not due yet (due %s)", due)
	}
	both := append(append([]byte{}, trusted...), mustBundle(t, later)...)
	for _, tc := range []struct {
		name      string
		trusted   []byte
		at        time.Time
		want      servingcert.Reason
		wantFinal bool
	}{
		{"its CA alone: kept", trusted, now, servingcert.ReasonNone, true},
		{"a CA that outlives it added: due", both, now, servingcert.ReasonExpiring, false},
		{"expired: replaced", trusted, leaf[0].NotAfter, servingcert.ReasonExpiring, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, check := range []func(servingcert.Spec, map[string][]byte, []byte, time.Time, float64) servingcert.Verdict{servingcert.Check, servingcert.CheckOverdue} {
				v := check(spec, data, tc.trusted, tc.at, 0)
				if v.Reason != tc.want || v.Final != tc.wantFinal {
					t.Fatalf("verdict %q final %v (%s), want %q final %v", v.Reason, v.Final, v.Detail, tc.want, tc.wantFinal)
				}
				if v.Final && (!v.RenewAt.Equal(leaf[0].NotAfter) || v.Detail == "") {
					t.Errorf("final cert: RenewAt %s (want its NotAfter %s), detail %q", v.RenewAt, leaf[0].NotAfter, v.Detail)
				}
			}
		})
	}
}

// TestCheckRenewsFarFromCAExpiry: a cert cut at its CA's end that is past
// its renewal point while the CA has hours left is renewed as before, not
// kept: only in the CA's last minutes would a renewal be due at once. Kept
// from its renewal point, certs status would report it for the last third
// of every default install's decade, until the root's rotation.
func TestCheckRenewsFarFromCAExpiry(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour, Backdate: certs.ClockSkew})
	trusted := mustBundle(t, ca)
	data := certstest.ServingSecretData(t, ca, spec)
	leaf, err := certs.ParseCertsPEM(data[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	at := leaf[0].NotBefore.Add(leaf[0].NotAfter.Sub(leaf[0].NotBefore) * 8 / 10) // ~4.8 h left
	for _, check := range []func(servingcert.Spec, map[string][]byte, []byte, time.Time, float64) servingcert.Verdict{servingcert.Check, servingcert.CheckOverdue} {
		if v := check(spec, data, trusted, at, 0); v.Reason != servingcert.ReasonExpiring || v.Final {
			t.Errorf("verdict %q final %v (%s), want %q: renewed as before", v.Reason, v.Final, v.Detail, servingcert.ReasonExpiring)
		}
	}
}

// TestEnsureNearCAExpiry: in its CA's last minutes, Ensure writes the
// serving cert once, not on every call (each pass of a webhook's loop, which
// every write kicks again: back to back until the CA expired). A CA added
// to the bundle that outlives the cert still renews it, and a root
// rotation's EnsureFrom still moves it to the new root.
func TestEnsureNearCAExpiry(t *testing.T) {
	ctx := context.Background()
	ca := nearExpiry(t)
	store := &servingcert.Store{Client: fake.NewClientset(), Issuer: ca, Log: logr.Discard()}
	trusted := mustBundle(t, ca)
	writes := 0
	for range 5 {
		out, err := store.Ensure(ctx, spec, trusted)
		if err != nil {
			t.Fatal(err)
		}
		if out.Written {
			writes++
		}
	}
	if writes != 1 {
		t.Fatalf("%d Secret writes in 5 passes with a CA 2 min from its end, want 1 (the first)", writes)
	}

	later := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	out, err := store.Ensure(ctx, spec, append(append([]byte{}, trusted...), mustBundle(t, later)...))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Written || out.Reason != servingcert.ReasonExpiring {
		t.Fatalf("with a CA that outlives the cert trusted: written %v, reason %q; want renewed as %q", out.Written, out.Reason, servingcert.ReasonExpiring)
	}

	if err := ca.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ca.ActivateNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	_, next, _ := ca.Roots()
	out, err = store.EnsureFrom(ctx, spec, mustBundle(t, ca), next)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Written || out.Reason != servingcert.ReasonRootRotate {
		t.Fatalf("EnsureFrom the next root: written %v, reason %q (%s); want re-issued as %q", out.Written, out.Reason, out.Detail, servingcert.ReasonRootRotate)
	}
	if err := certs.ChainsTo(out.Secret.Data[servingcert.KeyCert], next, time.Now()); err != nil {
		t.Fatal(err)
	}
}
