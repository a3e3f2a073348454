package vault

import (
	"context"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestFirstCertAfterRootSwitchNotCutAtOldRoot: certs/rootrotation's
// Vault step 2 (the next root becomes the mount's default). The old root has
// 2h left, the next one a decade. A certificate issued after the switch is
// signed by the next root and must not be cut at the old root's expiry: a
// bootstrap certificate is never renewed, so it would die with the root the
// rotation replaced.
func TestFirstCertAfterRootSwitchNotCutAtOldRoot(t *testing.T) {
	ctx := context.Background()
	srv := vaultdev.New(t)
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, data map[string]any) {
		t.Helper()
		if _, err := admin.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if err := admin.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	write("pki/root/generate/internal", map[string]any{"common_name": "fsm.root.old", "ttl": "2h", "issuer_name": "old"})
	write("pki/roles/"+DefaultRole, map[string]any{"allow_any_name": true, "max_ttl": "87600h"})
	time.Sleep(time.Second)

	zero := 0
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: srv.Token, MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	issue := func() (*certs.Certificate, string, time.Time) {
		t.Helper()
		start := time.Now()
		c, err := i.Issue(ctx, certs.Request{CommonName: "p.sidecar.sa.bookstore.cluster.local", Validity: 24 * time.Hour, Usage: certs.UsageBoth})
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := certs.ParseCertsPEM(c.CertPEM)
		return c, leaf[0].Issuer.CommonName, start
	}
	if _, s, _ := issue(); s != "fsm.root.old" {
		t.Fatalf("before the switch signed by %q", s)
	}
	// Step 1 and 2: the next root is added and becomes the default.
	write("pki/root/generate/internal", map[string]any{"common_name": "fsm.root.next", "ttl": "87600h", "issuer_name": "next"})
	write("pki/config/issuers", map[string]any{"default": "next"})
	time.Sleep(bundleReuse + time.Second) // past any cache of the default issuer

	c, s, start := issue()
	if s != "fsm.root.next" {
		t.Fatalf("after the switch signed by %q", s)
	}
	if got := c.NotAfter.Sub(start); got < 24*time.Hour-time.Minute {
		t.Errorf("first certificate after the switch, signed by fsm.root.next (a decade left), is valid for %s, want the 24h asked: it was cut at the expiry of fsm.root.old, the root it replaced", got.Round(time.Second))
	}
	c, _, start = issue()
	t.Logf("second certificate after the switch: valid for %s", c.NotAfter.Sub(start).Round(time.Second))
}
