package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestNamespaceOnEveryCall: a Vault Enterprise or HCP Vault PKI mount and
// token live in a namespace (HCP Vault's is "admin"), which Vault reads from
// X-Vault-Namespace on each call: a call without it goes to the root
// namespace, where the mount does not exist and the token is unknown. Every
// call the servers make (issuance, the CA read, the token keeper's lookup
// and renewal on a cloned client) carries the configured namespace; the
// API client's VAULT_NAMESPACE applies when none is configured, and the
// flag wins over it. The dev server is open source and ignores the header,
// so a proxy in front of it records what was sent.
func TestNamespaceOnEveryCall(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	for _, tc := range []struct {
		name, option, env, want string
	}{
		{"option", "admin/team-a/", "", "admin/team-a/"},
		{"VAULT_NAMESPACE", "", "admin", "admin"},
		{"option over VAULT_NAMESPACE", "admin/team-b", "admin", "admin/team-b"},
		{"none", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(vaultapi.EnvVaultNamespace, tc.env)
			p := newVaultProxy(t, srv.Addr)
			host, port := p.hostPort(t)
			token := issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: "1h", ExplicitMaxTTL: "2h"})
			i, err := New(ctx, Options{Host: host, Port: port, Protocol: "http", Role: DefaultRole, Token: token, Namespace: tc.option})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := i.Issue(ctx, podCert); err != nil {
				t.Fatal(err)
			}
			if _, err := i.CABundle(ctx); err != nil {
				t.Fatal(err)
			}
			keep(t, i)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if n, _ := p.count("auth/token/renew-self", time.Time{}); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the keeper renewed no token within 30 s; calls: %+v", p.requests())
				}
			}
			var paths []string
			for _, r := range p.requests() {
				paths = append(paths, r.path)
				if r.namespace != tc.want {
					t.Errorf("%s sent X-Vault-Namespace %q, want %q", r.path, r.namespace, tc.want)
				}
			}
			for _, want := range []string{"/v1/pki/issue/" + DefaultRole, "/v1/auth/token/lookup-self", "/v1/auth/token/renew-self"} {
				if !strings.Contains(strings.Join(paths, " "), want) {
					t.Errorf("no call to %s; calls: %q", want, paths)
				}
			}
		})
	}
}

// TestValidNamespace: a namespace travels in a header; one that cannot
// (spaces, control characters, non-ASCII) or names no namespace (an empty
// segment) is refused naming what is wrong, at start rather than as every
// issuance failing.
func TestValidNamespace(t *testing.T) {
	for _, tc := range []struct {
		ns, err string
	}{
		{"", ""},
		{"admin", ""},
		{"admin/", ""},
		{"/admin", ""},
		{"admin/team-a/", ""},
		{"team_1.eu", ""},
		{"admin team", `got character ' '`},
		{"admin\n", `got character '\n'`},
		{"admin\x7f", `got character '\x7f'`},
		{"ädmin", `got character 'ä'`},
		{"admin//team", "none empty"},
		{"/", "none empty"},
		{"//admin", "none empty"},
	} {
		err := ValidNamespace(tc.ns)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ValidNamespace(%q) = %v, want nil", tc.ns, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ValidNamespace(%q) = %v, want an error containing %q", tc.ns, err, tc.err)
		}
	}
	err := Options{Host: "vault", Port: 8200, Protocol: "http", Role: DefaultRole, Token: "t", Namespace: "a b"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `VaultNamespace "a b"`) {
		t.Errorf("Validate with namespace %q = %v, want it named", "a b", err)
	}
}
