package vault

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestIssueOverHTTPSWithCAFile: a Vault served over https by a private CA
// (the dev server's -dev-tls CA, which no system root trusts) issues once
// that CA is given as CAFile (--vault-ca-file); without it, or with another
// CA, issuance fails saying the authority is unknown and naming the flag.
func TestIssueOverHTTPSWithCAFile(t *testing.T) {
	// The API client also reads these; the test's outcome must not depend
	// on the caller's shell.
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME"} {
		t.Setenv(env, "")
	}
	ctx := context.Background()
	srv := vaultdev.NewWith(t, vaultdev.Config{TLS: true})
	if !strings.HasPrefix(srv.Addr, "https://") || srv.CAFile == "" {
		t.Fatalf("dev server Addr %q, CAFile %q: want https and the CA's file", srv.Addr, srv.CAFile)
	}
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	zero := 0
	opts := func(caFile string) Options {
		return Options{Host: srv.Host, Port: srv.Port, Protocol: "https", Role: DefaultRole, Token: srv.Token, CAFile: caFile, MaxRetries: &zero}
	}
	req := certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer}

	t.Run("with the CA file", func(t *testing.T) {
		i, err := New(ctx, opts(srv.CAFile))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, err := i.Issue(ctx, req)
		if err != nil {
			t.Fatalf("Issue over https with CAFile %s: %v\nvault output:\n%s", srv.CAFile, err, srv.Output())
		}
		if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, req.CommonName, req.Usage, start.Add(req.Validity-2*time.Second)); err != nil {
			t.Fatal(err)
		}
	})

	otherCA, err := certstest.MustNew(t, certstest.Options{}).CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(other, otherCA, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, caFile := range map[string]string{"without a CA file": "", "with another CA": other} {
		t.Run(name, func(t *testing.T) {
			i, err := New(ctx, opts(caFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = i.Issue(ctx, req)
			if err == nil {
				t.Fatal("Issue succeeded against a Vault whose CA is not trusted")
			}
			t.Logf("Issue: %v", err)
			for _, want := range []string{"x509: certificate signed by unknown authority", "--vault-ca-file", srv.Addr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

// TestCAFileRefused: a CA file that cannot be read or holds no certificate
// fails New (and ReadCAFile, which --vault-ca-file's validation uses) naming
// the option and the file, before any call to Vault.
func TestCAFileRefused(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "token")
	if err := os.WriteFile(notPEM, []byte("s.not-a-certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{missing, "no such file or directory"},
		{notPEM, "no PEM certificate found"},
	} {
		if _, err := ReadCAFile(tc.file); err == nil || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadCAFile(%s) = %v, want an error naming the file and %q", tc.file, err, tc.want)
		}
		_, err := New(context.Background(), Options{Host: "127.0.0.1", Port: DefaultPort, Protocol: "https", Role: DefaultRole, Token: "t", CAFile: tc.file})
		want := `vault: options: VaultCAFile "` + tc.file + `" in Hashi Vault options: `
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with CAFile %s: err = %v, want prefix %q and %q", tc.file, err, want, tc.want)
		}
	}
}

// TestVaultCertificateErrorsNameTheFix: a Vault reached over https whose
// certificate this server refuses is never called, and not reported as
// unreachable: the error says what is wrong with the certificate and which
// setting fixes it. VAULT_SKIP_VERIFY=true in the environment (read by the
// API client) does not turn off the verification CAFile asks for.
func TestVaultCertificateErrorsNameTheFix(t *testing.T) {
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME"} {
		t.Setenv(env, "")
	}
	var called atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		called.Add(1)
		http.NotFound(w, nil)
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// httptest's certificate is its own root, valid for 127.0.0.1 and
	// example.com, not localhost.
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, certs.EncodeCertsPEM(srv.Certificate()), 0o600); err != nil {
		t.Fatal(err)
	}
	otherPEM, err := certstest.MustNew(t, certstest.Options{}).CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCA, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	unknownCA := []string{`issued by "O=Acme Co", which no CA in --vault-ca-file "` + otherCA + `"`, "x509: certificate signed by unknown authority"}
	for _, c := range []struct {
		name, host, caFile string
		skipVerify         bool
		serverName         string
		want               []string
	}{
		{"another CA", "127.0.0.1", otherCA, false, "", unknownCA},
		{"another CA, VAULT_SKIP_VERIFY=true", "127.0.0.1", otherCA, true, "", unknownCA},
		{"another host name", "localhost", serverCA, false, "", []string{"not valid for localhost", "--vault-host", "fsm.vault.host", "x509: certificate is valid for"}},
		{"another name in VAULT_TLS_SERVER_NAME", "127.0.0.1", serverCA, false, "localhost", []string{"not valid for localhost", "VAULT_TLS_SERVER_NAME", "x509: certificate is valid for"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.skipVerify {
				t.Setenv("VAULT_SKIP_VERIFY", "true")
			}
			if c.serverName != "" {
				t.Setenv("VAULT_TLS_SERVER_NAME", c.serverName)
			}
			before := called.Load()
			zero := 0
			i, err := New(context.Background(), Options{Host: c.host, Port: p, Protocol: "https", Role: DefaultRole, Token: "t", CAFile: c.caFile, MaxRetries: &zero})
			if err != nil {
				t.Fatal(err)
			}
			_, err = i.Issue(context.Background(), certs.Request{CommonName: "a.b.svc", DNSNames: []string{"a.b.svc"}, Validity: time.Hour, Usage: certs.UsageServer})
			if err == nil {
				t.Fatal("Issue succeeded against a Vault whose certificate this server refuses")
			}
			if n := called.Load() - before; n != 0 {
				t.Errorf("the Vault was called %d times: its certificate was not verified", n)
			}
			for _, w := range append(c.want, "https://"+net.JoinHostPort(c.host, port)) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "unreachable") {
				t.Errorf("err = %v: the server was reached", err)
			}
			if c.serverName != "" && strings.Contains(err.Error(), "--vault-host") {
				t.Errorf("err = %v: --vault-host is not what names the certificate's expected host here", err)
			}
		})
	}
}
