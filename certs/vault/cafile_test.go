package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

const (
	reloadedLog = "--vault-ca-file changed"
	rejectedLog = "--vault-ca-file cannot be used"
	validLog    = "--vault-ca-file is valid again"
)

// unknownCA is what an issuance through a client that does not trust
// Vault's CA fails with.
const unknownCA = "x509: certificate signed by unknown authority"

// TestCAFileReloadedWithoutRestart: a running Issuer takes a Vault CA
// rotated in --vault-ca-file's Secret at its next poll, written as the
// kubelet updates a Secret volume (a new directory, then a symlink renamed
// over ..data), against a real Vault dev server over https. Started with
// another CA, issuance fails for the unknown authority; once the right CA
// is written it succeeds with no restart. A file that then holds no
// certificate keeps the right CA in use, is logged once however often it is
// read and shows in fsm_webhooks_vault_ca_file_valid; the right CA again is
// said to be valid again without a reload, and another CA written later is
// taken too (the file, not this server, decides whom Vault is trusted by).
func TestCAFileReloadedWithoutRestart(t *testing.T) {
	clearVaultTLSEnv(t)
	ctx := context.Background()
	srv := vaultdev.NewWith(t, vaultdev.Config{TLS: true})
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	rightCA, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := otherCAPEM(t)
	dir := t.TempDir()
	file := kubeletWrite(t, dir, otherCA)

	// The first poll after a write reads it; the slack is for a starved
	// machine (2 shared cores, every suite under the race detector), where
	// Vault's issuance (its own RSA key generation) can take seconds. Without
	// a reload nothing changes however long the test waits.
	const every = 200 * time.Millisecond
	const within = every + 20*time.Second
	var logs vaultdev.LogLines
	zero := 0
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "https", Role: DefaultRole, Token: srv.Token,
		CAFile: file, CAFilePoll: every, MaxRetries: &zero, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	watchCA(t, i)
	reloads := testutil.ToFloat64(caFileReloads)
	req := certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer}
	issue := func() error {
		_, err := i.Issue(ctx, req)
		return err
	}

	if err := issue(); err == nil || !strings.Contains(err.Error(), unknownCA) {
		t.Fatalf("Issue trusting another CA: %v, want %q", err, unknownCA)
	}

	written := time.Now()
	kubeletWrite(t, dir, rightCA)
	poll.Until(t, within, every/4, "issuance once the right CA is written to --vault-ca-file", issue)
	t.Logf("issued %s after the right CA was written (polled every %s)", time.Since(written).Round(time.Millisecond), every)
	assertLogged(t, &logs, reloadedLog, 1)
	if got := testutil.ToFloat64(caFileReloads) - reloads; got != 1 {
		t.Errorf("fsm_webhooks_vault_ca_file_reloads_total grew by %v, want 1", got)
	}
	assertCAFileValid(t, 1)
	inUse := i.client()

	for _, bad := range [][]byte{[]byte("not a certificate\n"), nil} {
		kubeletWrite(t, dir, bad)
		poll.Until(t, within, every/4, "the unusable --vault-ca-file logged", func() error {
			return loggedTimes(&logs, rejectedLog, 1)
		})
	}
	time.Sleep(5 * every) // several more polls of the same problem
	assertLogged(t, &logs, rejectedLog, 1)
	assertCAFileValid(t, 0)
	if err := issue(); err != nil {
		t.Fatalf("Issue with an unusable --vault-ca-file after the right CA: %v", err)
	}
	for _, l := range logs.Lines() {
		if strings.Contains(l, rejectedLog) && (!strings.Contains(l, file) || !strings.Contains(l, "no PEM certificate found")) {
			t.Errorf("log %s\nwant it to name %s and why", l, file)
		}
	}

	kubeletWrite(t, dir, rightCA)
	poll.Until(t, within, every/4, "--vault-ca-file logged valid again", func() error {
		return loggedTimes(&logs, validLog, 1)
	})
	assertCAFileValid(t, 1)
	if i.client() != inUse {
		t.Error("the client was replaced for the CA it already trusted")
	}

	kubeletWrite(t, dir, otherCA)
	poll.Until(t, within, every/4, "issuance failing once another CA is written", func() error {
		if err := issue(); err == nil || !strings.Contains(err.Error(), unknownCA) {
			return fmt.Errorf("Issue: %v, want %q", err, unknownCA)
		}
		return nil
	})
	assertLogged(t, &logs, reloadedLog, 2)
}

// TestCAFileSwapKeepsTokenChanges: clients swapped for a new CA while
// certificates are issued and the token changes (read from its Secret as
// after a 403, and as the keeper's poll of the Secret does) lose no token
// change: the client in use always carries the token set last. Run with
// -race.
func TestCAFileSwapKeepsTokenChanges(t *testing.T) {
	clearVaultTLSEnv(t)
	ctx := context.Background()
	srv := vaultdev.NewWith(t, vaultdev.Config{TLS: true})
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: "1h"}), issueToken(ctx, t, admin, vaultapi.TokenCreateRequest{TTL: "1h"})}
	ca, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "fsm-system"
	// The Secret holds inSecret: a reactor rather than updates, whose
	// cost would space the token changes out.
	var inSecret atomic.Value
	inSecret.Store(tokens[0])
	cs := kfake.NewClientset()
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vault-token", Namespace: ns}, Data: map[string][]byte{"token": []byte(inSecret.Load().(string))}}, nil
	})
	zero := 0
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "https", Role: DefaultRole, CAFile: srv.CAFile, MaxRetries: &zero,
		TokenSecretName: "vault-token", TokenSecretKey: "token", TokenSecretNamespace: ns, Secrets: cs})
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var swaps, issued atomic.Int64
	var wg sync.WaitGroup
	defer func() { // before t.Fatal's exit too: no goroutine outlives the test
		stop.Store(true)
		wg.Wait()
	}()
	wg.Go(func() {
		for !stop.Load() {
			if err := i.useCA(ca); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	})
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := i.Issue(ctx, podCert); err != nil {
					t.Errorf("Issue while clients are swapped: %v", err)
					return
				}
				issued.Add(1)
			}
		})
	}
	k := &keeper{i: i, backoff: tokenRetryMin}
	// At least 1000 changes, and on until issuances ran beside them.
	deadline := time.Now().Add(2 * time.Minute)
	n := 1
	for ; (n <= 1000 || issued.Load() < 10) && !t.Failed(); n++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d issuances in 2 minutes", issued.Load())
		}
		token := tokens[n%2]
		inSecret.Store(token)
		// Most through reloadToken, whose Secret read (a fake) is quick,
		// so that changes and swaps interleave often.
		changed := false
		if n%20 == 0 {
			changed = k.pollSecret(ctx)
		} else {
			i.tokenMu.Lock()
			i.tokenReadAt = time.Time{}
			i.tokenMu.Unlock()
			changed = i.reloadToken(ctx, tokens[(n+1)%2])
		}
		if !changed {
			t.Fatalf("change %d: the token in the Secret was not taken", n)
		}
		if got := i.client().Token(); got != token {
			t.Fatalf("change %d: the client in use has the token before (%d swaps so far): the change was lost in a swap", n, swaps.Load())
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps and %d issuances during %d token changes", swaps.Load(), issued.Load(), n-1)
	if swaps.Load() == 0 {
		t.Error("no client was swapped: the race was not run")
	}
}

// TestCAFilePoll: what one poll does with the file, by what was read
// before. A problem is logged once until it changes and never replaces the
// CAs in use; new valid content is swapped in; the content in use is left.
func TestCAFilePoll(t *testing.T) {
	a, b := otherCAPEM(t), otherCAPEM(t)
	type step struct {
		content []byte // nil: the file is missing
		useErr  error  // what building the client fails with
		want    caOutcome
	}
	garbage, empty := []byte("s.not-a-certificate\n"), []byte{}
	built := errors.New("no client")
	for _, tc := range []struct {
		name          string
		steps         []step
		errors, infos int
		inUse         []byte
		valid         float64
	}{
		{"same content", []step{{a, nil, caUnchanged}, {a, nil, caUnchanged}}, 0, 0, a, 1},
		{"new valid content", []step{{b, nil, caReloaded}, {b, nil, caUnchanged}}, 0, 1, b, 1},
		{"garbage: kept, logged once", []step{{garbage, nil, caRejected}, {garbage, nil, caStillRejected}, {garbage, nil, caStillRejected}}, 1, 0, a, 0},
		{"empty: kept, logged once", []step{{empty, nil, caRejected}, {empty, nil, caStillRejected}}, 1, 0, a, 0},
		{"missing, then garbage: two problems", []step{{nil, nil, caRejected}, {nil, nil, caStillRejected}, {garbage, nil, caRejected}}, 2, 0, a, 0},
		{"valid again, as in use", []step{{garbage, nil, caRejected}, {a, nil, caRecovered}, {a, nil, caUnchanged}}, 1, 1, a, 1},
		{"valid again, new", []step{{garbage, nil, caRejected}, {b, nil, caReloaded}}, 1, 1, b, 1},
		{"the same problem again after a valid file", []step{{garbage, nil, caRejected}, {a, nil, caRecovered}, {garbage, nil, caRejected}}, 2, 1, a, 0},
		{"no client: kept, logged once, retried", []step{{b, built, caRejected}, {b, built, caStillRejected}, {b, nil, caReloaded}}, 1, 1, b, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caFileValid.WithLabelValues().Set(1) // as WatchCAFile starts
			path := filepath.Join(t.TempDir(), "ca.crt")
			var logs vaultdev.LogLines
			var useErr error
			var used [][]byte
			f := &caFile{path: path, inUse: a, log: logs.Logger(), use: func(ca []byte) error {
				if useErr != nil {
					return useErr
				}
				used = append(used, ca)
				return nil
			}}
			for n, s := range tc.steps {
				if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				if s.content != nil {
					if err := os.WriteFile(path, s.content, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				useErr = s.useErr
				if got := f.poll(); got != s.want {
					t.Errorf("poll %d = %d, want %d; logged %q", n+1, got, s.want, logs.Lines())
				}
			}
			var errs, infos int
			for _, l := range logs.Lines() {
				if strings.Contains(l, `"error"=`) {
					errs++
					if !strings.Contains(l, path) || !strings.Contains(l, "--vault-ca-file") {
						t.Errorf("log %s: want it to name the flag and %s", l, path)
					}
				} else {
					infos++
				}
			}
			if errs != tc.errors || infos != tc.infos {
				t.Errorf("logged %d errors and %d infos, want %d and %d: %q", errs, infos, tc.errors, tc.infos, logs.Lines())
			}
			if string(f.inUse) != string(tc.inUse) {
				t.Errorf("content in use is not the one expected")
			}
			for _, u := range used {
				if string(u) == string(a) {
					t.Error("the client was rebuilt for the content in use")
				}
			}
			if got := testutil.ToFloat64(caFileValid.WithLabelValues()); got != tc.valid {
				t.Errorf("fsm_webhooks_vault_ca_file_valid = %v, want %v", got, tc.valid)
			}
		})
	}
}

// kubeletWrite writes content to dir/ca.crt as the kubelet updates a
// Secret volume (its AtomicWriter): into a new directory, then ..data, the
// symlink ca.crt resolves through, is replaced by a rename and the old
// directory removed. It returns dir/ca.crt.
func kubeletWrite(t *testing.T, dir string, content []byte) string {
	t.Helper()
	ts, err := os.MkdirTemp(dir, "..ts-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "ca.crt"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	data, tmp := filepath.Join(dir, "..data"), filepath.Join(dir, "..data_tmp")
	old, _ := os.Readlink(data)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ca.crt")
	if old == "" {
		if err := os.Symlink(filepath.Join("..data", "ca.crt"), file); err != nil {
			t.Fatal(err)
		}
		return file
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
	return file
}

// watchCA runs i.WatchCAFile until the test ends, and waits for it to
// return.
func watchCA(t *testing.T, i *Issuer) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { i.WatchCAFile(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// otherCAPEM is the PEM of a new CA, not Vault's.
func otherCAPEM(t *testing.T) []byte {
	t.Helper()
	pem, err := certstest.MustNew(t, certstest.Options{}).CABundle(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// clearVaultTLSEnv unsets what the API client reads of TLS from the
// environment: a test's outcome must not depend on the caller's shell.
func clearVaultTLSEnv(t *testing.T) {
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME"} {
		t.Setenv(env, "")
	}
}

func loggedTimes(logs *vaultdev.LogLines, msg string, want int) error {
	n := 0
	for _, l := range logs.Lines() {
		if strings.Contains(l, msg) {
			n++
		}
	}
	if n != want {
		return fmt.Errorf("logged %q %d times, want %d: %q", msg, n, want, logs.Lines())
	}
	return nil
}

func assertLogged(t *testing.T, logs *vaultdev.LogLines, msg string, want int) {
	t.Helper()
	if err := loggedTimes(logs, msg, want); err != nil {
		t.Error(err)
	}
}

func assertCAFileValid(t *testing.T, want float64) {
	t.Helper()
	if got := testutil.ToFloat64(caFileValid.WithLabelValues()); got != want {
		t.Errorf("fsm_webhooks_vault_ca_file_valid = %v, want %v", got, want)
	}
}
