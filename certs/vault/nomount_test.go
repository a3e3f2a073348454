package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestMissingPKIMountNamed: a Vault with no PKI engine at the mount
// (enabled elsewhere, pki_int as Vault's tutorials name it, or not yet) is
// told apart from a PKI mount without a root. Both used to read as "no CA
// at pki/cert/ca: generate or import a root on the PKI mount", which sends
// the operator to generate a root on a mount that does not exist.
func TestMissingPKIMountNamed(t *testing.T) {
	ctx := context.Background()
	srv := vaultdev.New(t)
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	// A PKI engine, but at pki_int; and one at pki-empty with no root.
	for _, m := range []string{"pki_int", "pki-empty"} {
		if err := admin.Sys().MountWithContext(ctx, m, &vaultapi.MountInput{Type: "pki"}); err != nil {
			t.Fatal(err)
		}
	}
	zero := 0
	for _, tc := range []struct {
		mount, want, notWant string
	}{
		{"pki", "has no PKI engine at pki/cert/ca (404 no handler for route", "generate or import a root"},
		{"pki-empty", "has no CA at pki-empty/cert/ca: generate or import a root on the PKI mount", "no PKI engine"},
	} {
		t.Run(tc.mount, func(t *testing.T) {
			i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: srv.Token, Mount: tc.mount, MaxRetries: &zero})
			if err != nil {
				t.Fatal(err)
			}
			_, ierr := i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
			_, berr := i.CABundle(ctx)
			for what, err := range map[string]error{"Issue": ierr, "CABundle": berr} {
				t.Logf("%s: %v", what, err)
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.notWant) {
					t.Errorf("%s: err = %v, want it to say %q and not %q", what, err, tc.want, tc.notWant)
				}
				if err != nil && !strings.Contains(err.Error(), srv.Addr) {
					t.Errorf("%s: err = %v does not name the Vault server %s", what, err, srv.Addr)
				}
			}
		})
	}
}
