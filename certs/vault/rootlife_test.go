package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

func TestCAExpiryRefusal(t *testing.T) {
	refusal := &vaultapi.ResponseError{StatusCode: 400, Errors: []string{
		"cannot satisfy request, as TTL would result in notAfter of 2036-12-01T03:49:14.962850569Z that is beyond the expiration of the CA certificate at 2036-12-01T03:49:12Z"}}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{refusal, true},
		{fmt.Errorf("wrapped: %w", refusal), true},
		{&vaultapi.ResponseError{StatusCode: 400, Errors: []string{"common name x not allowed by this role"}}, false},
		{&vaultapi.ResponseError{StatusCode: 500, Errors: refusal.Errors}, false},
		{nil, false},
	} {
		if got := caExpiryRefusal(tc.err); got != tc.want {
			t.Errorf("caExpiryRefusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestIssueCappedAtCALifetime: FSM's documented Vault set-up (root generated
// with ttl=87600h, mount max lease TTL 87600h, role max_ttl 24h) remediated
// as the clamp log line says (role max_ttl patched to 87600h). The 87600h
// serving and bootstrap certificates fsm-webhooks asks for would end after
// the root, which Vault refuses: they must be issued, cut at the CA's end as
// Tresor cuts them, and not be reported as a role clamp. The same holds for
// a root with less left than the role's 24h, and for a role pinned to an
// issuer other than the mount's default.
func TestIssueCappedAtCALifetime(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	write := func(path string, data map[string]any) {
		t.Helper()
		if _, err := admin.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if _, err := admin.Logical().JSONMergePatch(ctx, "pki/roles/"+DefaultRole, map[string]any{"max_ttl": "87600h"}); err != nil {
		t.Fatal(err)
	}
	// A mount whose root has 2h left, with FSM's documented 24h role.
	if err := admin.Sys().MountWithContext(ctx, "pki-late", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	write("pki-late/root/generate/internal", map[string]any{"common_name": "fsm.root.late", "ttl": "2h"})
	write("pki-late/roles/"+DefaultRole, map[string]any{"allow_any_name": true, "max_ttl": "24h"})
	// A role pinned to a second issuer of the mount that ends in 3h, while
	// the default issuer lasts a decade.
	write("pki/root/generate/internal", map[string]any{"common_name": "fsm.root.pinned", "ttl": "3h", "issuer_name": "pinned"})
	write("pki/roles/pinned", map[string]any{"allow_any_name": true, "max_ttl": "87600h", "issuer_ref": "pinned"})

	time.Sleep(2 * time.Second) // the roots were generated a moment before, as they always are
	zero := 0
	for _, tc := range []struct {
		mount, role, ca string
		validity        time.Duration
	}{
		{"pki", DefaultRole, vaultdev.RootCommonName, 87600 * time.Hour},
		{"pki-late", DefaultRole, "fsm.root.late", 24 * time.Hour},
		{"pki", "pinned", "fsm.root.pinned", 24 * time.Hour},
	} {
		t.Run(tc.mount+"/"+tc.role, func(t *testing.T) {
			logs := &vaultdev.LogLines{}
			i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Mount: tc.mount, Role: tc.role, Token: srv.Token, MaxRetries: &zero, Logger: logs.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			clamped := testutil.ToFloat64(ttlClamped.WithLabelValues(tc.role))
			for _, req := range []certs.Request{
				{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: tc.validity, Usage: certs.UsageServer},
				{CommonName: "p1.sidecar.sa.bookstore.cluster.local", DNSNames: []string{"p1.sidecar.sa.bookstore.cluster.local"}, Validity: tc.validity, Usage: certs.UsageBoth},
			} {
				c, err := i.Issue(ctx, req)
				if err != nil {
					t.Fatalf("%s: %v", req.CommonName, err)
				}
				chain, err := certs.ParseCertsPEM(c.CertPEM)
				if err != nil {
					t.Fatal(err)
				}
				leaf := chain[0]
				bundle, err := certs.ParseBundle(time.Now(), c.CABundle)
				if err != nil {
					t.Fatal(err)
				}
				var ca *x509.Certificate
				for _, r := range bundle.Certificates() {
					if r.Subject.CommonName == leaf.Issuer.CommonName {
						ca = r
					}
				}
				if ca == nil || ca.Subject.CommonName != tc.ca {
					t.Fatalf("%s: signed by %q, want %q in the bundle", req.CommonName, leaf.Issuer.CommonName, tc.ca)
				}
				if leaf.NotAfter.After(ca.NotAfter) {
					t.Errorf("%s: NotAfter %s is after its CA's %s", req.CommonName, leaf.NotAfter, ca.NotAfter)
				}
				// Cut just before the CA's end, not shortened further.
				if short := ca.NotAfter.Sub(leaf.NotAfter); short > certs.RemoteCASkew+5*time.Second {
					t.Errorf("%s: NotAfter %s ends %s before its CA's %s, want at most %s", req.CommonName, leaf.NotAfter, short, ca.NotAfter, certs.RemoteCASkew)
				}
				if !c.NotAfter.Equal(leaf.NotAfter) {
					t.Errorf("%s: Certificate.NotAfter = %s, the certificate says %s", req.CommonName, c.NotAfter, leaf.NotAfter)
				}
				if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, req.CommonName, req.Usage, time.Now()); err != nil {
					t.Errorf("%s: %v", req.CommonName, err)
				}
			}
			if got := testutil.ToFloat64(ttlClamped.WithLabelValues(tc.role)) - clamped; got != 0 {
				t.Errorf("fsm_webhooks_vault_ttl_clamped_total{role=%q} grew by %v: a cut at the CA's end is not the role's clamp", tc.role, got)
			}
			lines := logs.Lines()
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1 note for one CA: %q", len(lines), lines)
			}
			for _, want := range []string{`"level"=0`, "end with it", `"ca"="CN=` + tc.ca + `"`, "rotate the mount's root before"} {
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line lacks %s:\n%s", want, lines[0])
				}
			}
			t.Logf("CA cap note: %s", lines[0])
		})
	}
}

// TestPinnedRoleRefusedOnce: a role pinned to an issuer that ends before the
// mount's default makes Vault refuse the first certificate capped at the
// default; the issuer then caps at the CA that signed, so later
// certificates cost one call each, not a refusal, two CA reads and a retry.
func TestPinnedRoleRefusedOnce(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	for path, data := range map[string]map[string]any{
		"pki/root/generate/internal": {"common_name": "fsm.root.pinned", "ttl": "3h", "issuer_name": "pinned"},
	} {
		if _, err := admin.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if _, err := admin.Logical().WriteWithContext(ctx, "pki/roles/pinned", map[string]any{"allow_any_name": true, "max_ttl": "87600h", "issuer_ref": "pinned"}); err != nil {
		t.Fatal(err)
	}

	// Count what the issuer sends, through a proxy in front of the server.
	var mu sync.Mutex
	calls := map[string]int{}
	target, err := url.Parse(fmt.Sprintf("http://%s:%d", srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		mu.Lock()
		defer mu.Unlock()
		calls[fmt.Sprintf("%s %s %d", r.Request.Method, r.Request.URL.Path, r.StatusCode)]++
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	u, err := url.Parse(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	i, err := New(ctx, Options{Host: u.Hostname(), Port: port, Protocol: "http", Role: "pinned", Token: srv.Token, MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(n int) {
		t.Helper()
		req := certs.Request{CommonName: fmt.Sprintf("p%d.sidecar.sa.bookstore.cluster.local", n), Validity: 87600 * time.Hour, Usage: certs.UsageBoth}
		c, err := i.Issue(ctx, req)
		if err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
		if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, req.CommonName, req.Usage, time.Now()); err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
	}
	snapshot := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(calls)
	}
	issue(0)
	if got := snapshot()["PUT /v1/pki/issue/pinned 400"]; got != 1 {
		t.Fatalf("first certificate: %d refusals of pki/issue/pinned, want 1 (capped at the default, which the pinned issuer ends before): %v", got, snapshot())
	}
	before := snapshot()
	const more = 5
	for n := 1; n <= more; n++ {
		issue(n)
	}
	after := snapshot()
	for call, n := range after {
		if d := n - before[call]; d != 0 && call != "PUT /v1/pki/issue/pinned 200" {
			t.Errorf("%d more %q for %d certificates, want none: %v", d, call, more, after)
		}
	}
	if d := after["PUT /v1/pki/issue/pinned 200"] - before["PUT /v1/pki/issue/pinned 200"]; d != more {
		t.Errorf("%d issue calls for %d certificates, want one each: %v", d, more, after)
	}

	// Pinned back to the mount's decade-long default: the first certificate
	// is cut at the pinned root it no longer signs with, and asked once
	// more at the length the default allows.
	if _, err := admin.Logical().JSONMergePatch(ctx, "pki/roles/pinned", map[string]any{"issuer_ref": "default"}); err != nil {
		t.Fatal(err)
	}
	before = snapshot()
	req := certs.Request{CommonName: "repinned.sidecar.sa.bookstore.cluster.local", Validity: 87600 * time.Hour, Usage: certs.UsageBoth}
	c, err := i.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(c.NotAfter); left < 24*time.Hour {
		t.Errorf("first certificate after the role left the 3h root: %s left, want the default root's decade", left.Round(time.Second))
	}
	if d := snapshot()["PUT /v1/pki/issue/pinned 200"] - before["PUT /v1/pki/issue/pinned 200"]; d != 2 {
		t.Errorf("%d issue calls, want 2 (cut at the old signer, then at the one that signed)", d)
	}
}

// devPKI is a Vault dev server with FSM's documented PKI set-up (mount pki,
// role flomesh, max_ttl 24h) and an admin client.
func devPKI(ctx context.Context, t *testing.T) (*vaultdev.Server, *vaultapi.Client) {
	t.Helper()
	srv := vaultdev.New(t)
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	return srv, admin
}
