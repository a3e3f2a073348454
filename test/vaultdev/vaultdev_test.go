package vaultdev

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestServer runs the real Vault dev server: it must answer authenticated
// requests, mount a PKI engine, and leave no process behind after Stop.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s, err := Start(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := s.Pid()
	stopped := false
	defer func() {
		if !stopped {
			_ = s.Stop() // the test already failed; do not leak the server
		}
	}()
	if !strings.HasPrefix(s.Addr, "http://127.0.0.1:") {
		t.Errorf("Addr = %q, want a loopback http address", s.Addr)
	}
	if s.Token == "" || s.Token == "root" {
		t.Errorf("Token = %q, want a random token", s.Token)
	}

	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki"}); err != nil {
		t.Fatalf("secrets enable pki: %v\nvault output:\n%s", err, s.Output())
	}
	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatalf("listing mounts: %v", err)
	}
	if m, ok := mounts["pki/"]; !ok || m.Type != "pki" {
		t.Errorf("mounts = %v, want pki/ of type pki", keys(mounts))
	}

	// The token is what authenticates: a client without it is refused.
	anon, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	anon.ClearToken()
	var respErr *vaultapi.ResponseError
	if _, err := anon.Sys().ListMountsWithContext(ctx); !errors.As(err, &respErr) || respErr.StatusCode != http.StatusForbidden {
		t.Errorf("listing mounts without a token: err = %v, want 403", err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	// Stop reaped the server, so its pid and group must be gone.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("vault pid %d after Stop: kill(0) = %v, want ESRCH", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("vault process group %d after Stop: kill(0) = %v, want ESRCH", pid, err)
	}
	if _, err := c.Sys().HealthWithContext(ctx); err == nil {
		t.Errorf("%s still answers after Stop", s.Addr)
	}
}

// TestServerTLS: with Config.TLS the server answers https with a
// certificate only its CAFile verifies (as a Vault behind a private CA),
// Client trusts that CA, and Stop removes the CA's directory.
func TestServerTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s, err := StartWith(ctx, os.Stderr, Config{TLS: true})
	if err != nil {
		t.Fatalf("StartWith TLS: %v", err)
	}
	defer func() { _ = s.Stop() }() // on failure; Stop is idempotent
	if !strings.HasPrefix(s.Addr, "https://127.0.0.1:") || s.CAFile == "" {
		t.Fatalf("Addr %q, CAFile %q: want https and the CA's file", s.Addr, s.CAFile)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().HealthWithContext(ctx); err != nil {
		t.Fatalf("health over https with CAFile: %v", err)
	}
	// The system's roots do not verify it.
	resp, err := http.Get(s.Addr + "/v1/sys/health")
	if err == nil {
		_ = resp.Body.Close()
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("GET without the CA: err = %v, want x509.UnknownAuthorityError", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(s.CAFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CA directory after Stop: stat = %v, want it removed", err)
	}
}

func TestServerEnv(t *testing.T) {
	got := serverEnv([]string{"PATH=/bin", "VAULT_ADDR=http://x", "VAULT_TOKEN=t", "HOME=/h", "XVAULT_=kept"})
	want := []string{"PATH=/bin", "HOME=/h", "XVAULT_=kept"}
	if !slices.Equal(got, want) {
		t.Errorf("serverEnv = %q, want %q", got, want)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
