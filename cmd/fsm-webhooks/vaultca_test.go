package main

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// TestVaultCAFileReachesIssuer: serve's Vault issuer gets --vault-ca-file
// (certs/vault's TestIssueOverHTTPSWithCAFile issues through it from a
// real https Vault). A file that went bad after validation fails the
// issuer naming it, before any call to Vault.
func TestVaultCAFileReachesIssuer(t *testing.T) {
	o := parseOptions(t, []string{"--certificate-manager=vault", "--vault-host=127.0.0.1", "--vault-token=t", "--vault-protocol=https", "--vault-ca-file=testdata/kubeconfig"}, nil)
	_, err := newIssuer(context.Background(), o, nil, nil, logr.Discard())
	want := `vault: options: VaultCAFile "testdata/kubeconfig" in Hashi Vault options: testdata/kubeconfig: no PEM certificate found`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("newIssuer = %v, want %q", err, want)
	}
}
