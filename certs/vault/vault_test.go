package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

func TestOptionsValidate(t *testing.T) {
	ok := Options{Host: "vault.fsm-system.svc", Port: DefaultPort, Protocol: "https", Role: DefaultRole, Token: "t"}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"ok", func(*Options) {}, ""},
		{"token from secret", func(o *Options) {
			o.Token, o.TokenSecretName, o.TokenSecretKey, o.TokenSecretNamespace = "", "vault-token", "token", "fsm-system"
		}, "VaultToken Secret set in Hashi Vault options but no Kubernetes client"},
		{"host", func(o *Options) { o.Host = "" }, "VaultHost not specified in Hashi Vault options"},
		{"role", func(o *Options) { o.Role = "" }, "VaultRole not specified in Hashi Vault options"},
		{"protocol", func(o *Options) { o.Protocol = "ftp" }, "VaultProtocol in Hashi Vault options must be one of [http, https], got ftp"},
		{"port", func(o *Options) { o.Port = 70000 }, "VaultPort in Hashi Vault options must be between 1 and 65535, got 70000"},
		{"no token", func(o *Options) { o.Token = "" }, "VaultToken not specified in Hashi Vault options"},
		{"CA file over http", func(o *Options) { o.Protocol, o.CAFile = "http", "/etc/vault-ca/ca.crt" },
			`VaultCAFile "/etc/vault-ca/ca.crt" in Hashi Vault options verifies Vault's https certificate, but VaultProtocol is http`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if got := ok.Address(); got != "https://vault.fsm-system.svc:8200" {
		t.Errorf("Address = %s", got)
	}
}

// TestVault runs every case against one real Vault dev server with a PKI
// mount configured here.
func TestVault(t *testing.T) {
	ctx := context.Background()
	srv := vaultdev.New(t)
	// FSM's documented role "flomesh" has max_ttl 24h; "short" is capped at 2h.
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}, vaultdev.Role{Name: "short", MaxTTL: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	opts := func(role, token string) Options {
		return Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: role, Token: token, MaxRetries: &zero}
	}

	t.Run("issued", func(t *testing.T) {
		i, err := New(ctx, opts(DefaultRole, srv.Token))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			validity time.Duration
			usage    certs.Usage
		}{
			{"p1.sidecar.sa.bookstore.cluster.local", 90 * time.Second, certs.UsageBoth},
			{"fsm-injector.fsm-system.svc", time.Hour, certs.UsageServer},
		} {
			start := time.Now()
			c, err := i.Issue(ctx, certs.Request{CommonName: tc.name, DNSNames: []string{tc.name}, Validity: tc.validity, Usage: tc.usage})
			end := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, tc.name, tc.usage, start.Add(tc.validity-2*time.Second)); err != nil {
				t.Fatal(err)
			}
			leaf, _ := certs.ParseCertsPEM(c.CertPEM)
			// The TTL is honoured to the second, not rounded to hours.
			if leaf[0].NotAfter.Before(start.Add(tc.validity-time.Second)) || leaf[0].NotAfter.After(end.Add(tc.validity+time.Second)) {
				t.Errorf("NotAfter = %s, want %s after issuance", leaf[0].NotAfter, tc.validity)
			}
			if alg, _ := certs.AlgorithmOf(leaf[0].PublicKey); alg != certs.RSA2048 {
				t.Errorf("key = %s, want the role's RSA2048", alg)
			}
			if !hasEKU(leaf[0], x509.ExtKeyUsageServerAuth) || !hasEKU(leaf[0], x509.ExtKeyUsageClientAuth) {
				t.Errorf("EKU = %v", leaf[0].ExtKeyUsage)
			}
		}
		b, err := i.CABundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := certs.ParseCertsPEM(b)
		if len(roots) != 1 || roots[0].Subject.CommonName != vaultdev.RootCommonName {
			t.Fatalf("CA bundle = %v", roots)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		o := opts(DefaultRole, srv.Token)
		o.Port = freeport.Must(t)
		i, err := New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
		want := fmt.Sprintf("vault: issue x: reading the CA of mount pki, which the certificate must not outlive: the Vault server at http://127.0.0.1:%d is unreachable: ", o.Port)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("err = %v, want prefix %q", err, want)
		}
	})

	t.Run("token denied", func(t *testing.T) {
		tok, err := admin.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"default"}, NoParent: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, token := range []string{tok.Auth.ClientToken, "not-a-token"} {
			i, err := New(ctx, opts(DefaultRole, token))
			if err != nil {
				t.Fatal(err)
			}
			_, err = i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
			if err == nil || !strings.Contains(err.Error(), "denied the token for pki/issue/flomesh (403 ") {
				t.Fatalf("err = %v", err)
			}
		}
	})

	t.Run("role missing", func(t *testing.T) {
		i, err := New(ctx, opts("no-such-role", srv.Token))
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
		if err == nil || !strings.Contains(err.Error(), `role "no-such-role" does not exist on Vault mount pki`) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("TTL above the role's max is accepted", func(t *testing.T) {
		for _, tc := range []struct {
			role    string
			granted time.Duration
		}{
			// FSM's documented set-up: decade-long serving and bootstrap
			// certificates asked of a role with max_ttl 24h.
			{DefaultRole, 24 * time.Hour},
			{"short", 2 * time.Hour},
		} {
			t.Run(tc.role, func(t *testing.T) {
				o := opts(tc.role, srv.Token)
				logs := &vaultdev.LogLines{}
				o.Logger = logs.Logger()
				i, err := New(ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				clamped := testutil.ToFloat64(ttlClamped.WithLabelValues(tc.role))
				reqs := []certs.Request{
					{CommonName: "fsm-injector.fsm-system.svc", Validity: 87600 * time.Hour, Usage: certs.UsageServer},
					{CommonName: "p1.sidecar.sa.bookstore.cluster.local", Validity: 87600 * time.Hour, Usage: certs.UsageBoth},
					{CommonName: "p2.sidecar.sa.bookstore.cluster.local", Validity: 87600 * time.Hour, Usage: certs.UsageBoth},
				}
				for _, req := range reqs {
					req.DNSNames = []string{req.CommonName}
					start := time.Now()
					c, err := i.Issue(ctx, req)
					if err != nil {
						t.Fatalf("%s: %v", req.CommonName, err)
					}
					leaf, _ := certs.ParseCertsPEM(c.CertPEM)
					if got := leaf[0].NotAfter.Sub(start); got < tc.granted-5*time.Second || got > tc.granted+5*time.Second {
						t.Errorf("%s: valid for %s after issuance, want the role's %s", req.CommonName, got, tc.granted)
					}
					if !c.NotAfter.Equal(leaf[0].NotAfter) {
						t.Errorf("%s: Certificate.NotAfter = %s, the certificate says %s", req.CommonName, c.NotAfter, leaf[0].NotAfter)
					}
					if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, req.CommonName, req.Usage, time.Now()); err != nil {
						t.Errorf("%s: %v", req.CommonName, err)
					}
				}
				if got := testutil.ToFloat64(ttlClamped.WithLabelValues(tc.role)) - clamped; got != float64(len(reqs)) {
					t.Errorf("fsm_webhooks_vault_ttl_clamped_total{role=%q} grew by %v, want %d", tc.role, got, len(reqs))
				}
				if got := testutil.ToFloat64(grantedValidity.WithLabelValues(tc.role)); got < (tc.granted-5*time.Second).Seconds() || got > tc.granted.Seconds() {
					t.Errorf("fsm_webhooks_vault_ttl_granted_seconds{role=%q} = %v, want about %v", tc.role, got, tc.granted.Seconds())
				}
				lines := logs.Lines()
				if len(lines) != 1 {
					t.Fatalf("logged %d lines, want 1 for one (role, requested, granted): %q", len(lines), lines)
				}
				for _, want := range []string{
					`"role"="` + tc.role + `"`, `"requested"="87600h0m0s"`, `"granted"="` + tc.granted.String() + `"`,
					`"vaultWarning"="TTL`, "nothing renews a pod's sidecar bootstrap certificate",
					"raise max_ttl of Vault role", "vault patch pki/roles/" + tc.role + " max_ttl=87600h",
				} {
					if !strings.Contains(lines[0], want) {
						t.Errorf("log line lacks %s:\n%s", want, lines[0])
					}
				}
				t.Logf("clamp warning: %s", lines[0])
			})
		}
	})

	t.Run("token from a Secret", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{})
		if _, err := env.Clientset.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "vault-token"},
			Data:       map[string][]byte{"token": []byte(srv.Token + "\n")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		o := opts(DefaultRole, "")
		o.TokenSecretName, o.TokenSecretKey, o.TokenSecretNamespace, o.Secrets = "vault-token", "token", "default", env.Clientset
		i, err := New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := i.Issue(ctx, certs.Request{CommonName: "s.example", Validity: time.Minute, Usage: certs.UsageClient}); err != nil {
			t.Fatal(err)
		}
		o.TokenSecretKey = "missing"
		if _, err := New(ctx, o); err == nil || !strings.Contains(err.Error(), `token Secret default/vault-token has no key "missing"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func hasEKU(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}
