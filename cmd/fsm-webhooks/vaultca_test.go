package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// TestVaultTLSFilesReachIssuer: serve's Vault issuer gets --vault-ca-file
// and --vault-client-cert-file with --vault-client-key-file (certs/vault's
// TestIssueOverHTTPSWithCAFile and TestIssueWithClientCertificate issue
// through them from a real https Vault). A file that went bad after
// validation fails the issuer naming it, before any call to Vault.
func TestVaultTLSFilesReachIssuer(t *testing.T) {
	key := filepath.Join(t.TempDir(), "tls.key")
	if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"CA file", []string{"--vault-ca-file=testdata/kubeconfig"},
			`vault: options: VaultCAFile "testdata/kubeconfig" in Hashi Vault options: testdata/kubeconfig: no PEM certificate found`},
		{"client certificate", []string{"--vault-client-cert-file=testdata/kubeconfig", "--vault-client-key-file=" + key},
			`vault: options: VaultClientCertFile "testdata/kubeconfig" in Hashi Vault options: testdata/kubeconfig with key ` + key + `: tls: failed to find any PEM data in certificate input`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parseOptions(t, append([]string{"--certificate-manager=vault", "--vault-host=127.0.0.1", "--vault-token=t", "--vault-protocol=https"}, tc.args...), nil)
			_, err := newIssuer(context.Background(), o, nil, nil, logr.Discard())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("newIssuer = %v, want %q", err, tc.want)
			}
		})
	}
}
