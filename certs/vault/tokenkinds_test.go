package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestTokensOfEveryKindAreRenewed: the tokens operators hand FSM are not
// only `vault token create` ones. A periodic token and the tokens an auth
// method (AppRole here; Kubernetes auth gives the same kinds) logs in with,
// TTL'd or periodic, are kept alive past their first lease by
// KeepTokenAlive asking for the token's creation TTL, and none is taken
// for one at its max TTL (Vault grants a periodic token its period, not
// the increment asked).
func TestTokensOfEveryKindAreRenewed(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	putIssuePolicy(ctx, t, admin)
	if err := admin.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	appRoleLogin := func(t *testing.T, role map[string]any) func() string {
		return func() string {
			name := "fsm-" + time.Now().Format("150405.000000")
			role["token_policies"] = "pki-issue"
			if _, err := admin.Logical().WriteWithContext(ctx, "auth/approle/role/"+name, role); err != nil {
				t.Fatal(err)
			}
			id, err := admin.Logical().ReadWithContext(ctx, "auth/approle/role/"+name+"/role-id")
			if err != nil {
				t.Fatal(err)
			}
			sec, err := admin.Logical().WriteWithContext(ctx, "auth/approle/role/"+name+"/secret-id", nil)
			if err != nil {
				t.Fatal(err)
			}
			login, err := admin.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
				"role_id": id.Data["role_id"], "secret_id": sec.Data["secret_id"]})
			if err != nil {
				t.Fatal(err)
			}
			return login.Auth.ClientToken
		}
	}
	const life = shortLease
	for _, c := range []struct {
		name  string
		token func() string
	}{
		{"periodic token", func() string {
			return issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{Period: vaultTTL(life)})
		}},
		{"periodic token created with a longer ttl", func() string {
			return issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{Period: vaultTTL(life), TTL: "1h"})
		}},
		{"AppRole login, token_ttl", appRoleLogin(t, map[string]any{"token_ttl": vaultTTL(life), "token_max_ttl": "1h"})},
		{"AppRole login, token_period", appRoleLogin(t, map[string]any{"token_period": vaultTTL(life)})},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs vaultdev.LogLines
			zero := 0
			issuer := func(token string) *Issuer {
				i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: token, MaxRetries: &zero, Logger: logs.Logger()})
				if err != nil {
					t.Fatal(err)
				}
				return i
			}
			// The control: a token made the same way, not kept alive,
			// is refused by then (the lease is as short as meant).
			i, left := issuer(c.token()), issuer(c.token())
			renewals := testutil.ToFloat64(tokenRenewals)
			keep(t, i)
			after := pastFirstLease(life)
			time.Sleep(after)
			if _, err := i.Issue(ctx, podCert); err != nil {
				t.Fatalf("%s after the token was made with a lease of %s, renewed: %v; logged %q", after, life, err, logs.Lines())
			}
			if _, err := left.Issue(ctx, podCert); err == nil || !strings.Contains(err.Error(), "denied the token") {
				t.Fatalf("the same kind of token, not renewed, %s later: %v, want Vault's denial", after, err)
			}
			if v := testutil.ToFloat64(tokenRenewing.WithLabelValues()); v != 1 {
				t.Errorf("fsm_webhooks_vault_token_renewing %v, want 1; logged %q", v, logs.Lines())
			}
			if n := testutil.ToFloat64(tokenRenewals) - renewals; n < 2 {
				t.Errorf("%v renewals in %s of a %s lease, want at least 2", n, after, life)
			}
			for _, wrong := range []string{"can no longer be extended", "is not renewable", "does not expire", "failed"} {
				if said(logs.Lines(), wrong) {
					t.Errorf("logged %q of a token that is renewed: %q", wrong, logs.Lines())
				}
			}
		})
	}
}
