package vault

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestBundleFollowsTheMountsIssuers walks certs/rootrotation's "Vault and
// cert-manager" steps on a real Vault: the bundle must hold the next root
// from the moment it is added to the mount (before it signs), keep the old
// root while it is still an issuer of the mount, also in a server started
// after the switch, and drop it once it is deleted from the mount.
func TestBundleFollowsTheMountsIssuers(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	zero := 0
	newIssuer := func() *Issuer {
		i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: srv.Token, MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	roots := func(i *Issuer) []string {
		t.Helper()
		b, err := i.CABundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := certs.ParseBundle(time.Now(), b)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range bundle.Certificates() {
			names = append(names, r.Subject.CommonName)
		}
		return names
	}
	signer := func(i *Issuer) string {
		t.Helper()
		c, err := i.Issue(ctx, certs.Request{CommonName: "fsm-injector.fsm-system.svc", Validity: time.Hour, Usage: certs.UsageServer})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := certs.ParseCertsPEM(c.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return leaf[0].Issuer.CommonName
	}
	const next = "fsm.root.next"
	running := newIssuer()
	if got, want := roots(running), []string{vaultdev.RootCommonName}; !slices.Equal(got, want) {
		t.Fatalf("before the rotation the bundle is %v, want %v", got, want)
	}
	list, err := admin.Logical().ListWithContext(ctx, "pki/issuers")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := list.Data["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("the mount lists issuers %v, want one", keys)
	}
	oldID, _ := keys[0].(string)

	// Step 1: the next root is added to the mount; the old one still signs.
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{
		"common_name": next, "ttl": "87600h", "issuer_name": "next",
	}); err != nil {
		t.Fatal(err)
	}
	if s := signer(running); s != vaultdev.RootCommonName {
		t.Fatalf("step 1 changed the signing root to %q", s)
	}
	if got, want := roots(running), []string{vaultdev.RootCommonName, next}; !slices.Equal(got, want) {
		t.Errorf("step 1: the bundle is %v, want %v (oldest first): the next root must be trusted before it signs", got, want)
	}

	// Step 2: the next root signs; both stay trusted, also in a server
	// started now (it has no issuing CA of its own to remember).
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/config/issuers", map[string]any{"default": "next"}); err != nil {
		t.Fatal(err)
	}
	restarted := newIssuer()
	if got, want := roots(restarted), []string{vaultdev.RootCommonName, next}; !slices.Equal(got, want) {
		t.Errorf("step 2, a server started after the switch: the bundle is %v, want %v: the old root still anchors every running sidecar", got, want)
	}
	if s := signer(restarted); s != next {
		t.Fatalf("step 2: signed by %q, want %q", s, next)
	}

	// Step 3: the old root is deleted from the mount after the grace period.
	if _, err := admin.Logical().DeleteWithContext(ctx, "pki/issuer/"+oldID); err != nil {
		t.Fatal(err)
	}
	for name, i := range map[string]*Issuer{"running": running, "restarted": restarted} {
		if got, want := roots(i), []string{next}; !slices.Equal(got, want) {
			t.Errorf("step 3, %s server: the bundle is %v, want %v once the old root left the mount", name, got, want)
		}
	}
}
