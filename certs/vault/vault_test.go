package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/assets"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
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
	port := startVault(t)
	admin := adminClient(t, port)
	setupPKI(t, admin)
	zero := 0
	opts := func(role, token string) Options {
		return Options{Host: "127.0.0.1", Port: port, Protocol: "http", Role: role, Token: token, MaxRetries: &zero}
	}

	t.Run("issued", func(t *testing.T) {
		i, err := New(ctx, opts(DefaultRole, "root"))
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
			if err := certs.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, tc.name, tc.usage, start.Add(tc.validity-2*time.Second)); err != nil {
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
		if len(roots) != 1 || roots[0].Subject.CommonName != "fsm.root" {
			t.Fatalf("CA bundle = %v", roots)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		o := opts(DefaultRole, "root")
		o.Port = freePort(t)
		i, err := New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
		want := fmt.Sprintf("vault: issue x: the Vault server at http://127.0.0.1:%d is unreachable: ", o.Port)
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
		i, err := New(ctx, opts("no-such-role", "root"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(ctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
		if err == nil || !strings.Contains(err.Error(), `role "no-such-role" does not exist on Vault mount pki`) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("TTL above the role's max", func(t *testing.T) {
		i, err := New(ctx, opts("short", "root"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(ctx, certs.Request{CommonName: "x.example", Validity: 3 * time.Hour, Usage: certs.UsageServer})
		if err == nil || !strings.Contains(err.Error(), "requested validity 3h0m0s is above what Vault role \"short\" allows") ||
			!strings.Contains(err.Error(), "valid for only 2h0m0s") || !strings.Contains(err.Error(), "(Vault: TTL") {
			t.Fatalf("err = %v", err)
		}
		t.Logf("TTL above max: %v", err)
	})

	t.Run("token from a Secret", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{})
		if _, err := env.Clientset.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "vault-token"},
			Data:       map[string][]byte{"token": []byte("root\n")},
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startVault runs `vault server -dev` on a free loopback port with root token
// "root" and stops it when the test ends.
func startVault(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin, err := assets.Vault(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("vault binary not available (run `go run ./test/assets/build --vault`): %v", err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id=root", fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port))
	cmd.Env = append(os.Environ(), "VAULT_LOG_LEVEL=warn", "HOME="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	c := adminClient(t, port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Sys().HealthWithContext(context.Background())
		if err == nil && h.Initialized && !h.Sealed {
			return port
		}
		select {
		case <-exited:
			t.Fatalf("vault exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault not healthy after 30s (%v): %s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminClient(t *testing.T, port int) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("root")
	return c
}

// setupPKI follows FSM's deploy-vault.sh: a PKI mount with a decade max
// lease, root "fsm.root", role "flomesh"; plus a role "short" capped at 2h.
func setupPKI(t *testing.T, c *vaultapi.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"pki/root/generate/internal": {"common_name": "fsm.root", "ttl": "87600h"},
		"pki/roles/flomesh":          {"allow_any_name": true, "allow_subdomains": true, "max_ttl": "24h"},
		"pki/roles/short":            {"allow_any_name": true, "max_ttl": "2h"},
	} {
		if _, err := c.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}
