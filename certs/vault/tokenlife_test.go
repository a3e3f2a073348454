package vault

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// putIssuePolicy writes the policy "pki-issue", which lets a token issue
// from the pki mount's roles.
func putIssuePolicy(ctx context.Context, t *testing.T, admin *vaultapi.Client) {
	t.Helper()
	if err := admin.Sys().PutPolicyWithContext(ctx, "pki-issue", `path "pki/issue/*" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
}

// issueToken creates a token allowed to issue (and, through Vault's default
// policy, to look itself up and renew itself).
func issueToken(ctx context.Context, t *testing.T, admin *vaultapi.Client, req vaultapi.TokenCreateRequest) string {
	t.Helper()
	putIssuePolicy(ctx, t, admin)
	req.Policies = append([]string{"pki-issue"}, req.Policies...)
	req.NoParent = true
	tok, err := admin.Auth().Token().CreateWithContext(ctx, &req)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Auth.ClientToken
}

// keep runs i.KeepTokenAlive until the test ends.
func keep(t *testing.T, i *Issuer) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		i.KeepTokenAlive(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

var podCert = certs.Request{CommonName: "p.sidecar.sa.bookstore.cluster.local", Validity: time.Hour, Usage: certs.UsageBoth}

// shortLease is the lease of the tokens these tests see renewed. Each
// renewal has leaseSlack to land before the lease ends: with 6 s leases
// that was 2 s, less than a loaded CI machine (2 cores, an apiserver per
// package) can delay a timer and two Vault calls.
const shortLease = 15 * time.Second

// leaseSlack is how late a renewal of a lease may come before the token
// expires: the third of it that KeepTokenAlive leaves.
func leaseSlack(lease time.Duration) time.Duration { return lease - renewAfter(lease) }

// pastFirstLease is how long after a token with lease was created it is
// judged: its first lease is over by leaseSlack, so the same token not
// renewed is refused by then with as much margin as each renewal has.
func pastFirstLease(lease time.Duration) time.Duration { return lease + leaseSlack(lease) }

// vaultTTL is d as Vault's ttl fields take it.
func vaultTTL(d time.Duration) string { return fmt.Sprintf("%ds", int(d/time.Second)) }

// TestTokenRenewedBeforeItExpires: a renewable token with a short TTL keeps
// working past it while KeepTokenAlive runs, and the expiry gauge follows
// the renewals; the same token without it expires (the test's control).
func TestTokenRenewedBeforeItExpires(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	const ttl = shortLease
	zero := 0
	issuer := func(token string) *Issuer {
		i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: token, MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	kept := issuer(issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: vaultTTL(ttl), ExplicitMaxTTL: "1h"}))
	left := issuer(issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: vaultTTL(ttl), ExplicitMaxTTL: "1h"}))
	renewals := testutil.ToFloat64(tokenRenewals)
	keep(t, kept)
	after := pastFirstLease(ttl)
	time.Sleep(after)
	if _, err := kept.Issue(ctx, podCert); err != nil {
		t.Fatalf("%s after its token was created with a TTL of %s, renewed: %v", after, ttl, err)
	}
	if _, err := left.Issue(ctx, podCert); err == nil || !strings.Contains(err.Error(), "denied the token") {
		t.Fatalf("the same token, not renewed, %s later: %v, want Vault's denial", after, err)
	}
	if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 1 {
		t.Errorf("fsm_webhooks_vault_token_renewing %v, want 1", v)
	}
	if n := testutil.ToFloat64(tokenRenewals) - renewals; n < 2 { // at once, and before the first lease ended
		t.Errorf("%v renewals in %s of a %s token, want at least 2", n, after, ttl)
	}
	if at := time.Unix(int64(testutil.ToFloat64(tokenExpiry.WithLabelValues())), 0); at.Before(time.Now()) || at.After(time.Now().Add(ttl+time.Second)) {
		t.Errorf("fsm_webhooks_vault_token_expiry_timestamp_seconds %s, want within the next %s", at.UTC(), ttl)
	}
}

// TestTokenThatCannotBeRenewedIsReported: KeepTokenAlive says, once, when
// and why the token will stop working, and leaves a token that does not
// expire alone.
func TestTokenThatCannotBeRenewedIsReported(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	no := false
	// Renewed at once, at two thirds of its lease (granted up to its max
	// TTL), and two thirds of that later, granted only what is left: said
	// then, before it expires, each renewal with leaseSlack to spare.
	maxTTL := shortLease + 2*shortLease/3
	for _, c := range []struct {
		name string
		req  vaultapi.TokenCreateRequest
		want string
		// within: how long until it is said (said at the first pass, the
		// bound guards a hang; at its max TTL, before it expires)
		within time.Duration
	}{
		{"not renewable", vaultapi.TokenCreateRequest{TTL: "1h", Renewable: &no}, "The Vault token is not renewable", 30 * time.Second},
		{"at its max TTL", vaultapi.TokenCreateRequest{TTL: vaultTTL(shortLease), ExplicitMaxTTL: vaultTTL(maxTTL)}, "The Vault token can no longer be extended", maxTTL},
		{"no expiry", vaultapi.TokenCreateRequest{}, "The Vault token does not expire", 30 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			var token string
			if c.name == "no expiry" {
				token = srv.Token // a dev server's root token has no TTL
			} else {
				token = issueToken(ctx, t, admin, c.req)
			}
			var logs vaultdev.LogLines
			i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: token, Logger: logs.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			keep(t, i)
			deadline := time.Now().Add(c.within)
			for !said(logs.Lines(), c.want) {
				if time.Now().After(deadline) {
					t.Fatalf("not said within %s: %q; logged %q", c.within, c.want, logs.Lines())
				}
				time.Sleep(100 * time.Millisecond)
			}
			renewing := testutil.CollectAndCount(tokenRenewing)
			if c.name == "no expiry" {
				if renewing != 0 {
					t.Errorf("fsm_webhooks_vault_token_renewing present for a token that does not expire")
				}
			} else if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 0 {
				t.Errorf("fsm_webhooks_vault_token_renewing %v, want 0", v)
			}
			if c.name != "no expiry" && !said(logs.Lines(), `"secret"="--vault-token"`) {
				t.Errorf("the line does not say where the token comes from: %q", logs.Lines())
			}
		})
	}
}

func said(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// TestTokenRotatedInItsSecretIsRenewed: after a rotation through the Secret
// (TestTokenRotatedInItsSecret), the new token is the one renewed.
func TestTokenRotatedInItsSecretIsRenewed(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	const ttl = shortLease
	tokA := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: "1h"})
	env := testenv.Start(t, testenv.Options{})
	ns := "fsm-system"
	secret := tokenSecret(ctx, t, env, ns, tokA)
	i := secretTokenIssuer(ctx, t, srv, env, ns, nil)
	keep(t, i)
	if _, err := i.Issue(ctx, podCert); err != nil {
		t.Fatal(err)
	}
	// Created now, so that its TTL counts from the rotation.
	tokB := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: vaultTTL(ttl), ExplicitMaxTTL: "1h"})
	judged := time.Now().Add(pastFirstLease(ttl))
	secret.Data["token"] = []byte(tokB)
	if _, err := env.Clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Auth().Token().RevokeTreeWithContext(ctx, tokA); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Issue(ctx, podCert); err != nil { // Vault denies A: B is read from the Secret
		t.Fatal(err)
	}
	time.Sleep(time.Until(judged))
	if _, err := i.Issue(ctx, podCert); err != nil {
		t.Fatalf("%s after the rotation to a token with a TTL of %s: %v", pastFirstLease(ttl), ttl, err)
	}
}
