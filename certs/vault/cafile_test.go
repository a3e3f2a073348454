package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
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
		CAFile: file, TLSFilesPoll: every, MaxRetries: &zero, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	watchTLS(t, i)
	req := certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer}
	issue := func() error {
		_, err := i.Issue(ctx, req)
		return err
	}

	c := reloadCheck{i: i, logs: &logs, every: every, within: within, issue: issue, reloads: caFileReloads, valid: caFileValid,
		reloadedLog: reloadedLog, rejectedLog: rejectedLog, validLog: validLog}
	reloads := c.reloadsSoFar()
	if err := issue(); err == nil || !strings.Contains(err.Error(), unknownCA) {
		t.Fatalf("Issue trusting another CA: %v, want %q", err, unknownCA)
	}

	written := time.Now()
	kubeletWrite(t, dir, rightCA)
	poll.Until(t, within, every/4, "issuance once the right CA is written to --vault-ca-file", issue)
	t.Logf("issued %s after the right CA was written (polled every %s)", time.Since(written).Round(time.Millisecond), every)
	c.assertReloads(t, reloads, 1)

	for _, bad := range [][]byte{[]byte("not a certificate\n"), nil} {
		c.assertKept(t, []string{file, "no PEM certificate found"}, func() { kubeletWrite(t, dir, bad) })
	}
	c.assertValidAgain(t, func() { kubeletWrite(t, dir, rightCA) })

	kubeletWrite(t, dir, otherCA)
	poll.Until(t, within, every/4, "issuance failing once another CA is written", func() error {
		if err := issue(); err == nil || !strings.Contains(err.Error(), unknownCA) {
			return fmt.Errorf("Issue: %v, want %q", err, unknownCA)
		}
		return nil
	})
	c.assertReloads(t, reloads, 2)
}

// reloadCheck checks what a running Issuer does as the files of one of its
// TLS inputs change (TestCAFileReloadedWithoutRestart,
// TestClientCertReloadedWithoutRestart): the input's metrics, its log
// messages, and issuance through it.
type reloadCheck struct {
	i                                  *Issuer
	logs                               *vaultdev.LogLines
	every, within                      time.Duration
	issue                              func() error
	reloads                            prometheus.Counter
	valid                              *prometheus.GaugeVec
	reloadedLog, rejectedLog, validLog string
}

func (c reloadCheck) reloadsSoFar() float64 { return testutil.ToFloat64(c.reloads) }

// assertReloads: want reloads since the counter read before, each logged,
// and the input valid.
func (c reloadCheck) assertReloads(t *testing.T, before, want float64) {
	t.Helper()
	assertLogged(t, c.logs, c.reloadedLog, int(want))
	if got := c.reloadsSoFar() - before; got != want {
		t.Errorf("reloads grew by %v, want %v", got, want)
	}
	c.assertValid(t, 1)
}

func (c reloadCheck) assertValid(t *testing.T, want float64) {
	t.Helper()
	if got := testutil.ToFloat64(c.valid.WithLabelValues()); got != want {
		t.Errorf("valid gauge = %v, want %v", got, want)
	}
}

// assertKept: the unusable content write writes is logged once however
// often it is read (naming every one of want), shows in the gauge, and
// keeps the client in use, through which issuance goes on.
func (c reloadCheck) assertKept(t *testing.T, want []string, write func()) {
	t.Helper()
	inUse := c.i.client()
	write()
	poll.Until(t, c.within, c.every/4, "the unusable content logged", func() error {
		return loggedTimes(c.logs, c.rejectedLog, 1)
	})
	time.Sleep(5 * c.every) // several more polls of the same problem
	assertLogged(t, c.logs, c.rejectedLog, 1)
	c.assertValid(t, 0)
	if err := c.issue(); err != nil {
		t.Fatalf("Issue with unusable content after usable: %v", err)
	}
	if c.i.client() != inUse {
		t.Error("the client was replaced for content that cannot be used")
	}
	for _, l := range c.logs.Lines() {
		for _, w := range want {
			if strings.Contains(l, c.rejectedLog) && !strings.Contains(l, w) {
				t.Errorf("log %s\nwant it to name %s", l, w)
			}
		}
	}
}

// assertValidAgain: the content in use, written again by write after a
// problem, is said to be valid again, with no new client.
func (c reloadCheck) assertValidAgain(t *testing.T, write func()) {
	t.Helper()
	inUse := c.i.client()
	write()
	poll.Until(t, c.within, c.every/4, "logged valid again", func() error {
		return loggedTimes(c.logs, c.validLog, 1)
	})
	c.assertValid(t, 1)
	if c.i.client() != inUse {
		t.Error("the client was replaced for the content in use")
	}
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
			if err := i.swapClient(tlsFiles{ca: ca}); err != nil {
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
		var changed bool
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

// TestCAFilePoll: what one poll does with --vault-ca-file, by what was
// read before (runPolls).
func TestCAFilePoll(t *testing.T) {
	a, b := otherCAPEM(t), otherCAPEM(t)
	one := func(content []byte) [][]byte { return [][]byte{content} }
	garbage, empty := []byte("s.not-a-certificate\n"), []byte{}
	built := errors.New("no client")
	runPolls(t, []string{"ca.crt"}, one(a), func(paths []string, log logr.Logger, use func([][]byte) error) *tlsInput {
		return caInput(paths[0], a, log, func(ca []byte) error { return use(one(ca)) })
	}, []pollCase{
		{"same content", []pollStep{{one(a), nil, tlsUnchanged}, {one(a), nil, tlsUnchanged}}, 0, 0, one(a), 1},
		{"new valid content", []pollStep{{one(b), nil, tlsReloaded}, {one(b), nil, tlsUnchanged}}, 0, 1, one(b), 1},
		{"garbage: kept, logged once", []pollStep{{one(garbage), nil, tlsRejected}, {one(garbage), nil, tlsStillRejected}, {one(garbage), nil, tlsStillRejected}}, 1, 0, one(a), 0},
		{"empty: kept, logged once", []pollStep{{one(empty), nil, tlsRejected}, {one(empty), nil, tlsStillRejected}}, 1, 0, one(a), 0},
		{"missing, then garbage: two problems", []pollStep{{one(nil), nil, tlsRejected}, {one(nil), nil, tlsStillRejected}, {one(garbage), nil, tlsRejected}}, 2, 0, one(a), 0},
		{"valid again, as in use", []pollStep{{one(garbage), nil, tlsRejected}, {one(a), nil, tlsRecovered}, {one(a), nil, tlsUnchanged}}, 1, 1, one(a), 1},
		{"valid again, new", []pollStep{{one(garbage), nil, tlsRejected}, {one(b), nil, tlsReloaded}}, 1, 1, one(b), 1},
		{"the same problem again after a valid file", []pollStep{{one(garbage), nil, tlsRejected}, {one(a), nil, tlsRecovered}, {one(garbage), nil, tlsRejected}}, 2, 1, one(a), 0},
		{"no client: kept, logged once, retried", []pollStep{{one(b), built, tlsRejected}, {one(b), built, tlsStillRejected}, {one(b), nil, tlsReloaded}}, 1, 1, one(b), 1},
	})
}

// pollStep is one poll of an input: the content of each of its files
// (nil: the file is missing), what building the client fails with, and
// the outcome wanted.
type pollStep struct {
	content [][]byte
	useErr  error
	want    tlsOutcome
}

// pollCase is polls of an input, with the errors and infos they must log,
// the content then in use and the input's gauge.
type pollCase struct {
	name          string
	steps         []pollStep
	errors, infos int
	inUse         [][]byte
	valid         float64
}

// runPolls runs each case on an input newInput makes of files named names
// in a new directory, starting from the content inUse: a problem is logged
// once until it changes, naming the flag and every file, and never
// replaces the content in use; new valid content is swapped in; the
// content in use is left.
func runPolls(t *testing.T, names []string, inUse [][]byte, newInput func(paths []string, log logr.Logger, use func([][]byte) error) *tlsInput, cases []pollCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := make([]string, len(names))
			for n, name := range names {
				paths[n] = filepath.Join(dir, name)
			}
			var logs vaultdev.LogLines
			var useErr error
			var used [][][]byte
			in := newInput(paths, logs.Logger(), func(content [][]byte) error {
				if useErr != nil {
					return useErr
				}
				used = append(used, content)
				return nil
			})
			in.valid.WithLabelValues().Set(1) // as WatchTLSFiles starts
			for n, s := range tc.steps {
				for f, path := range paths {
					if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Fatal(err)
					}
					if s.content[f] != nil {
						if err := os.WriteFile(path, s.content[f], 0o600); err != nil {
							t.Fatal(err)
						}
					}
				}
				useErr = s.useErr
				if got := in.poll(); got != s.want {
					t.Errorf("poll %d = %d, want %d; logged %q", n+1, got, s.want, logs.Lines())
				}
			}
			var errs, infos int
			for _, l := range logs.Lines() {
				if !strings.Contains(l, `"error"=`) {
					infos++
					continue
				}
				errs++
				for _, want := range append([]string{in.kv[1].(string)}, paths...) {
					if !strings.Contains(l, want) {
						t.Errorf("log %s: want it to name %s", l, want)
					}
				}
			}
			if errs != tc.errors || infos != tc.infos {
				t.Errorf("logged %d errors and %d infos, want %d and %d: %q", errs, infos, tc.errors, tc.infos, logs.Lines())
			}
			if !slices.EqualFunc(in.inUse, tc.inUse, bytes.Equal) {
				t.Errorf("content in use is not the one expected")
			}
			for _, u := range used {
				if slices.EqualFunc(u, inUse, bytes.Equal) {
					t.Error("the client was rebuilt for the content in use")
				}
			}
			if got := testutil.ToFloat64(in.valid.WithLabelValues()); got != tc.valid {
				t.Errorf("%s's gauge = %v, want %v", in.what, got, tc.valid)
			}
		})
	}
}

// kubeletWrite writes content to dir/ca.crt as the kubelet updates a
// Secret volume, and returns dir/ca.crt.
func kubeletWrite(t *testing.T, dir string, content []byte) string {
	t.Helper()
	kubeletWriteFiles(t, dir, map[string][]byte{"ca.crt": content})
	return filepath.Join(dir, "ca.crt")
}

// kubeletWriteFiles writes files (name: content) to dir as the kubelet
// updates a Secret volume (its AtomicWriter): into a new directory, then
// ..data, the symlink each file resolves through, is replaced by a rename
// and the old directory removed. Every write names the same files.
func kubeletWriteFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts, err := os.MkdirTemp(dir, "..ts-")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, tmp := filepath.Join(dir, "..data"), filepath.Join(dir, "..data_tmp")
	old, _ := os.Readlink(data)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	if old == "" {
		for name := range files {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

// watchTLS runs i.WatchTLSFiles until the test ends, and waits for it to
// return.
func watchTLS(t *testing.T, i *Issuer) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { i.WatchTLSFiles(ctx) })
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
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"} {
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
