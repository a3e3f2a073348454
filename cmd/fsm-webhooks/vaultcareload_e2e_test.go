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

	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestServeReloadsVaultCAFile: `serve --vault-ca-file` re-reads the file
// while it runs (certs/vault's TestCAFileReloadedWithoutRestart proves the
// reload against Vault; this, that serve runs it): a changed CA is taken and
// a file without a certificate is reported, each within a poll of the
// production period, and serve still returns promptly once stopped (the
// poller ends with it).
func TestServeReloadsVaultCAFile(t *testing.T) {
	const ns = "fsm-system"
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME"} {
		t.Setenv(env, "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := vaultdev.NewWith(t, vaultdev.Config{TLS: true})
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: "flomesh", MaxTTL: 87600 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	rightCA, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.crt")
	replaceFile(t, file, rightCA)

	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serveCtx, sigterm := context.WithCancel(ctx)
	defer sigterm()
	o, done := serveHooks(serveCtx, t, env.Config, ns, []string{hookValidator}, func(o *options, _ *serveFlags) {
		o.certificateManager = "vault"
		o.vaultHost, o.vaultPort, o.vaultProtocol, o.vaultToken = srv.Host, srv.Port, "https", srv.Token
		o.vaultCAFile = file
	})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitAnswers(t, hc, fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath), done, "the validator")

	// A poll of the production period, with slack for a loaded machine.
	const within = vault.DefaultCAFilePoll + 10*time.Second
	reloads := gathered(t, "fsm_webhooks_vault_ca_file_reloads_total")
	other, err := certstest.MustNew(t, certstest.Options{}).CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, file, other)
	poll.Until(t, within, 250*time.Millisecond, "serve taking a changed --vault-ca-file", func() error {
		if got := gathered(t, "fsm_webhooks_vault_ca_file_reloads_total") - reloads; got != 1 {
			return fmt.Errorf("fsm_webhooks_vault_ca_file_reloads_total grew by %v, want 1", got)
		}
		return nil
	})
	if got := gathered(t, "fsm_webhooks_vault_ca_file_valid"); got != 1 {
		t.Fatalf("fsm_webhooks_vault_ca_file_valid = %v after a reload, want 1", got)
	}
	replaceFile(t, file, []byte("not a certificate\n"))
	poll.Until(t, within, 250*time.Millisecond, "serve reporting an unusable --vault-ca-file", func() error {
		if got := gathered(t, "fsm_webhooks_vault_ca_file_valid"); got != 0 {
			return fmt.Errorf("fsm_webhooks_vault_ca_file_valid = %v, want 0", got)
		}
		return nil
	})

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
