package vault

import (
	"context"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestBundleWithoutDefaultIssuer: the mount's default issuer was
// deleted while another root is still on the mount (Vault then has no
// default). A role pinned to the remaining root (issuer_ref) still issues
// in Vault, and so must it here; the bundle holds the remaining root.
func TestBundleWithoutDefaultIssuer(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	list, err := admin.Logical().ListWithContext(ctx, "pki/issuers")
	if err != nil {
		t.Fatal(err)
	}
	oldID := list.Data["keys"].([]any)[0].(string)
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{"common_name": "fsm.root.next", "ttl": "87600h", "issuer_name": "next"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Logical().DeleteWithContext(ctx, "pki/issuer/"+oldID); err != nil {
		t.Fatal(err)
	}
	// A role pinned to the remaining root still issues in Vault.
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/roles/pinned", map[string]any{"allow_any_name": true, "max_ttl": "24h", "issuer_ref": "next"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/issue/pinned", map[string]any{"common_name": "direct", "ttl": "1h"}); err != nil {
		t.Fatalf("Vault itself: %v", err)
	}
	zero := 0
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: "pinned", Token: srv.Token, MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer}); err != nil {
		t.Errorf("Issue from a role pinned to the mount's remaining root: %v", err)
	}
	b, err := i.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := certs.ParseCertsPEM(b)
	if len(roots) != 1 || roots[0].Subject.CommonName != "fsm.root.next" {
		t.Fatalf("bundle = %v", roots)
	}
}
