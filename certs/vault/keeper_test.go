package vault

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestRenewalSurvivesOutage: Vault answers 503 (sealed) from just after the
// first renewal of a 36 s token until well past the renewal it was due for.
// The keeper retries with a backoff bounded by the token's remaining life
// (a handful of calls, not a busy loop: the API client's LifetimeWatcher
// made thousands), says so, and renews the token once Vault is back: it is
// still valid after the lease it had before the outage has ended.
func TestRenewalSurvivesOutage(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	p := newVaultProxy(t, srv.Addr)
	host, port := p.hostPort(t)
	// The outage ends half way from the renewal due to the lease's end:
	// the due renewal fails with half the lease's slack (6 s) to spare,
	// and the first call after the outage renews with the other half,
	// less a retry's wait (a quarter of what is left).
	const lease = 36 * time.Second
	outageFor := renewAfter(lease) + leaseSlack(lease)/2
	token := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: vaultTTL(lease), ExplicitMaxTTL: "1h"})
	var logs vaultdev.LogLines
	zero := 0 // no client retries: every attempt is the keeper's
	i, err := New(ctx, Options{Host: host, Port: port, Protocol: "http", Role: DefaultRole, Token: token, MaxRetries: &zero, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	keep(t, i)
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within %s: %s; logged %q", within, what, logs.Lines())
			}
		}
	}
	waitFor("the first renewal", 30*time.Second, func() bool { n, _ := p.count("renew-self", time.Time{}); return n > 0 })
	// The lease runs from the renewal, not from when this goroutine saw it
	// (seconds later on a starved machine): the outage is timed from there.
	renewed := p.first("renew-self")
	p.down.Store(true)
	outage := time.Now()
	time.Sleep(time.Until(renewed.Add(outageFor)))
	p.down.Store(false)
	back := time.Now()
	all, _ := p.count("/v1/auth/token/", outage)
	if all > 8 {
		t.Errorf("%d token calls during a %s outage: no backoff", all, back.Sub(outage).Round(time.Second))
	}
	if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 0 {
		t.Errorf("fsm_webhooks_vault_token_renewing %v during the outage, want 0", v)
	}
	if !said(logs.Lines(), "failed") {
		t.Errorf("the outage was not logged: %q", logs.Lines())
	}
	waitFor("a renewal after the outage", 10*time.Second, func() bool {
		n, down := p.count("renew-self", back)
		return n-down > 0 && testutil.ToFloat64(tokenRenewing.WithLabelValues()) == 1
	})
	time.Sleep(time.Until(renewed.Add(lease + 2*time.Second))) // the lease before the outage is over
	if _, err := admin.Auth().Token().LookupWithContext(ctx, token); err != nil {
		t.Errorf("the token, renewed after the outage, is gone %s after its last lease began before it: %v", time.Since(outage).Round(time.Second), err)
	}
}

// TestTokenWithoutRenewSelf: a token whose policy lets it look itself up but
// not renew itself (no `default` policy) is reported at once: an error
// naming renew-self and the 403, and the renewing gauge at 0, so the alert
// can fire.
func TestTokenWithoutRenewSelf(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	if err := admin.Sys().PutPolicyWithContext(ctx, "lookup-only", `path "auth/token/lookup-self" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	token := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{Policies: []string{"lookup-only"}, NoDefaultPolicy: true, TTL: "1h"})
	var logs vaultdev.LogLines
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: token, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	keep(t, i)
	const want = "denied the token for auth/token/renew-self (403"
	// "At once" is the keeper's first pass; the bound only guards a hang.
	for deadline := time.Now().Add(30 * time.Second); !said(logs.Lines(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not logged within 30 s: %q; logged %q", want, logs.Lines())
		}
	}
	if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 0 {
		t.Errorf("fsm_webhooks_vault_token_renewing %v, want 0", v)
	}
}

// TestRotatedTokenPickedUpWithoutIssuance: the documented rotation (write the
// new token into the Secret, then revoke the old) and the alert's remedy (a
// new token for one that cannot be renewed) need no issuance to take
// effect: the keeper re-reads the Secret, switches, and renews the new
// token, a short-lived one here, past its first lease.
func TestRotatedTokenPickedUpWithoutIssuance(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	env := testenv.Start(t, testenv.Options{})
	no := false
	for n, c := range []struct {
		name string
		old  vaultapi.TokenCreateRequest
	}{
		{"renewable, revoked after the rotation", vaultapi.TokenCreateRequest{TTL: "1h"}},
		{"not renewable", vaultapi.TokenCreateRequest{TTL: "1h", Renewable: &no}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := []string{"rotate-a", "rotate-b"}[n]
			tokA := issueToken(ctx, t, admin, c.old)
			secret := tokenSecret(ctx, t, env, ns, tokA)
			var logs vaultdev.LogLines
			i := secretTokenIssuer(ctx, t, srv, env, ns, func(o *Options) { o.Logger, o.TokenSecretPoll = logs.Logger(), time.Second })
			keep(t, i)
			time.Sleep(time.Second)
			const ttl = shortLease
			tokB := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: vaultTTL(ttl), ExplicitMaxTTL: "1h"})
			judged := time.Now().Add(pastFirstLease(ttl))
			secret.Data["token"] = []byte(tokB)
			if _, err := env.Clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if c.old.Renewable == nil {
				if err := admin.Auth().Token().RevokeTreeWithContext(ctx, tokA); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Until(judged))
			if !said(logs.Lines(), "Using the new Vault token in its Secret") {
				t.Errorf("the switch was not logged: %q", logs.Lines())
			}
			if _, err := admin.Auth().Token().LookupWithContext(ctx, tokB); err != nil {
				t.Fatalf("the token written into the Secret, %s later (its TTL %s): %v", pastFirstLease(ttl), ttl, err)
			}
			if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 1 {
				t.Errorf("fsm_webhooks_vault_token_renewing %v, want 1 (the new token)", v)
			}
			if _, err := i.Issue(ctx, podCert); err != nil {
				t.Errorf("issuance after the rotation: %v", err)
			}
		})
	}
}

// TestRefusedTokenInSecretKeepsTheCurrentOne: a token written into the
// Secret that Vault does not accept is not switched to: issuance goes on
// with the current token, the refusal is logged once, not at every
// re-read of the Secret, and the re-reads do not renew the token.
func TestRefusedTokenInSecretKeepsTheCurrentOne(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	env := testenv.Start(t, testenv.Options{})
	const ns = "fsm-system"
	secret := tokenSecret(ctx, t, env, ns, issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: "1h"}))
	var logs vaultdev.LogLines
	p := newVaultProxy(t, srv.Addr)
	i := secretTokenIssuer(ctx, t, srv, env, ns, func(o *Options) {
		o.Host, o.Port = p.hostPort(t)
		o.Logger, o.TokenSecretPoll = logs.Logger(), 200*time.Millisecond
	})
	keep(t, i)
	written := time.Now()
	secret.Data["token"] = []byte("hvs.not-a-token")
	if _, err := env.Clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Counted, not slept for: a starved keeper may not have re-read the
	// Secret at all within seconds. Each re-read asks Vault about the
	// refused token; the keeper's first lookup of its own may come after
	// the write too.
	const rereads = 15
	poll.Until(t, time.Minute, 50*time.Millisecond, fmt.Sprint(rereads, " re-reads of the refused token"), func() error {
		if n, _ := p.count("lookup-self", written); n < rereads+1 {
			return fmt.Errorf("%d lookup-self calls since it was written", n)
		}
		return nil
	})
	refused := 0
	for _, l := range logs.Lines() {
		if strings.Contains(l, "The token in the Vault token Secret is not used: Vault does not accept it") {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("the refused token was logged %d times, want once: %q", refused, logs.Lines())
	}
	if _, err := i.Issue(ctx, podCert); err != nil {
		t.Errorf("issuance with the current token: %v", err)
	}
	// A re-read that keeps the token neither renews it early nor cuts a
	// wait short: one renewal, at the start, for a 1h lease.
	if n, _ := p.count("renew-self", time.Time{}); n != 1 {
		t.Errorf("%d renew-self calls for a 1h token, with the Secret re-read at least %d times; want 1", n, rereads)
	}
}
