package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestServeReloadsVaultTLSFiles: `serve --vault-ca-file
// --vault-client-cert-file --vault-client-key-file` against a Vault whose
// listener requires client certificates starts (its serving certificates
// are issued through that listener: the client certificate reaches the
// issuer) and re-reads the files while it runs (certs/vault's
// TestCAFileReloadedWithoutRestart and TestClientCertReloadedWithoutRestart
// prove the reloads against Vault; this, that serve runs them): a changed CA
// and a renewed client certificate are taken, and a file without a
// certificate and a key of another certificate are reported, each within a
// poll of the production period, and serve still returns promptly once
// stopped (the poller ends with it).
func TestServeReloadsVaultTLSFiles(t *testing.T) {
	const ns = "fsm-system"
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"} {
		t.Setenv(env, "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := vaultdev.NewWith(t, vaultdev.Config{MutualTLS: true})
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: "flomesh", MaxTTL: 87600 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	rightCA, err := os.ReadFile(srv.MutualTLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := func() *certs.Certificate {
		c, err := srv.MutualTLS.ClientCA.Issue(ctx, certs.Request{CommonName: "fsm-webhooks", Validity: time.Hour, Usage: certs.UsageClient})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := clientCert()
	replaceFile(t, caFile, rightCA)
	replaceFile(t, certFile, first.CertPEM)
	replaceFile(t, keyFile, first.KeyPEM)

	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serveCtx, sigterm := context.WithCancel(ctx)
	defer sigterm()
	o, done := serveHooks(serveCtx, t, env.Config, ns, []string{hookValidator}, func(o *options, _ *serveFlags) {
		o.certificateManager = "vault"
		o.vaultHost, o.vaultPort, o.vaultProtocol, o.vaultToken = srv.Host, srv.MutualTLS.Port, "https", srv.Token
		o.vaultCAFile, o.vaultClientCertFile, o.vaultClientKeyFile = caFile, certFile, keyFile
	})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitAnswers(t, hc, fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath), done, "the validator")

	// A poll of the production period, with slack for a loaded machine.
	const within = vault.DefaultTLSFilesPoll + 10*time.Second
	taken := func(what, reloadsTotal, validGauge string, write func()) {
		t.Helper()
		reloads := gathered(t, reloadsTotal)
		write()
		poll.Until(t, within, 250*time.Millisecond, "serve taking a changed "+what, func() error {
			if got := gathered(t, reloadsTotal) - reloads; got != 1 {
				return fmt.Errorf("%s grew by %v, want 1", reloadsTotal, got)
			}
			return nil
		})
		if got := gathered(t, validGauge); got != 1 {
			t.Fatalf("%s = %v after a reload, want 1", validGauge, got)
		}
	}
	rejected := func(what, validGauge string, write func()) {
		t.Helper()
		write()
		poll.Until(t, within, 250*time.Millisecond, "serve reporting an unusable "+what, func() error {
			if got := gathered(t, validGauge); got != 0 {
				return fmt.Errorf("%s = %v, want 0", validGauge, got)
			}
			return nil
		})
	}

	renewed := clientCert()
	taken("client certificate", "fsm_webhooks_vault_client_cert_reloads_total", "fsm_webhooks_vault_client_cert_valid", func() {
		// Written key first: a poll between the two writes reads a
		// mismatched pair, which is kept out until the certificate follows.
		replaceFile(t, keyFile, renewed.KeyPEM)
		replaceFile(t, certFile, renewed.CertPEM)
	})
	rejected("client key", "fsm_webhooks_vault_client_cert_valid", func() { replaceFile(t, keyFile, first.KeyPEM) })

	other, err := certstest.MustNew(t, certstest.Options{}).CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	taken("--vault-ca-file", "fsm_webhooks_vault_ca_file_reloads_total", "fsm_webhooks_vault_ca_file_valid", func() { replaceFile(t, caFile, other) })
	rejected("--vault-ca-file", "fsm_webhooks_vault_ca_file_valid", func() { replaceFile(t, caFile, []byte("not a certificate\n")) })

	sigterm()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30 s of its context's end")
	}
}

// replaceFile writes content to path atomically (a new file renamed over
// it), as a reader polling path sees a Secret volume change.
func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// gathered is the gauge or counter name summed over its series, in the
// registry serve exports (0 when absent).
func gathered(t *testing.T, name string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
