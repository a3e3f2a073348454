package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

const (
	certReloadedLog = "the Vault client certificate (--vault-client-cert-file, --vault-client-key-file) changed"
	certRejectedLog = "the Vault client certificate (--vault-client-cert-file, --vault-client-key-file) cannot be used"
	certValidLog    = "the Vault client certificate (--vault-client-cert-file, --vault-client-key-file) is valid again"
	// What an issuance fails with when Vault's listener refuses the
	// client certificate presented, or that none is.
	certRefused  = "refused the TLS client certificate of --vault-client-cert-file"
	certRequired = "requires a TLS client certificate, and this server presents none"
)

// mutualTLSVault is a Vault dev server whose listener requires client
// certificates, its PKI set up, and Options reaching that listener.
func mutualTLSVault(t *testing.T) (*vaultdev.Server, Options) {
	t.Helper()
	clearVaultTLSEnv(t)
	srv := vaultdev.NewWith(t, vaultdev.Config{MutualTLS: true})
	// Through the dev listener, which asks for no client certificate.
	if err := srv.SetupPKI(t.Context(), "pki", vaultdev.Role{Name: DefaultRole, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	zero := 0
	return srv, Options{Host: srv.Host, Port: srv.MutualTLS.Port, Protocol: "https", Role: DefaultRole, Token: srv.Token,
		CAFile: srv.MutualTLS.CAFile, MaxRetries: &zero}
}

// clientCert is a TLS client certificate of ca, with its key.
func clientCert(t *testing.T, ca certs.Issuer) *certs.Certificate {
	t.Helper()
	c, err := ca.Issue(t.Context(), certs.Request{CommonName: "fsm-webhooks", Validity: time.Hour, Usage: certs.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writePair writes c's certificate and key to dir/tls.crt and dir/tls.key
// as the kubelet updates a kubernetes.io/tls Secret's volume, and returns
// their paths.
func writePair(t *testing.T, dir string, cert, key []byte) (certFile, keyFile string) {
	t.Helper()
	kubeletWriteFiles(t, dir, map[string][]byte{"tls.crt": cert, "tls.key": key})
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

// TestIssueWithClientCertificate: a Vault whose https listener requires and
// verifies client certificates (tls_require_and_verify_client_cert, as
// many production Vaults) issues once the certificate of a CA it trusts is
// given (--vault-client-cert-file, --vault-client-key-file). Without one,
// or with one of another CA, issuance fails saying that the client
// certificate is what Vault refused (not that Vault is unreachable) and
// which flags set it.
func TestIssueWithClientCertificate(t *testing.T) {
	srv, opts := mutualTLSVault(t)
	req := certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer}
	trusted := clientCert(t, srv.MutualTLS.ClientCA)
	other := clientCert(t, certstest.MustNew(t, certstest.Options{}))

	t.Run("with a certificate of the listener's client CA", func(t *testing.T) {
		o := opts
		o.ClientCertFile, o.ClientKeyFile = writePair(t, t.TempDir(), trusted.CertPEM, trusted.KeyPEM)
		i, err := New(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, err := i.Issue(t.Context(), req)
		if err != nil {
			t.Fatalf("Issue presenting a trusted client certificate: %v\nvault output:\n%s", err, srv.Output())
		}
		if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, req.CommonName, req.Usage, start.Add(req.Validity-2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if alert, ok := i.clientCertRefused(errors.New(h2NotEstablished)); ok {
			t.Errorf("probing Vault with a trusted client certificate: refused (%s)", alert)
		}
	})
	for _, tc := range []struct {
		name  string
		pair  *certs.Certificate
		alert string
		want  []string
	}{
		{"without a client certificate", nil, "certificate required", []string{certRequired, "--vault-client-cert-file and --vault-client-key-file", "fsm.vault.clientCertSecret"}},
		{"with a certificate of another CA", other, "unknown certificate authority", []string{certRefused, "tls_client_ca_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.pair != nil {
				o.ClientCertFile, o.ClientKeyFile = writePair(t, t.TempDir(), tc.pair.CertPEM, tc.pair.KeyPEM)
				tc.want = append(tc.want, o.ClientCertFile)
			}
			i, err := New(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			_, err = i.Issue(t.Context(), req)
			if err == nil {
				t.Fatal("Issue succeeded through a listener that requires a trusted client certificate")
			}
			t.Logf("Issue: %v", err)
			for _, want := range append(tc.want, srv.MutualTLS.Addr) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v\nwant it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "unreachable") {
				t.Errorf("err = %v: Vault was reached", err)
			}
			// Over TLS 1.3 HTTP/2 may drop Vault's alert (when it is read
			// before the first request is sent, or a write fails first),
			// which the probe reads: each way, whichever Issue met.
			for _, lost := range []error{errors.New(h2NotEstablished), &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}} {
				if alert, ok := i.clientCertRefused(lost); !ok || alert != tc.alert {
					t.Errorf("probing Vault after %v: %q, %v; want it refused (%s)", lost, alert, ok, tc.alert)
				}
			}
		})
	}
}

// TestClientCertReloadedWithoutRestart: a running Issuer takes a client
// certificate renewed in its kubernetes.io/tls Secret (as cert-manager
// renews one) at its next poll, with no restart, against a real Vault
// whose listener requires client certificates. A certificate of a CA Vault
// does not trust is taken too (the files, not this server, decide) and
// issuance fails; a renewed trusted one brings it back. A pair whose key
// is not the certificate's (read between the updates of the two files)
// keeps the pair in use, is logged once however often it is read and shows
// in fsm_webhooks_vault_client_cert_valid; the pair in use written again is
// said to be valid again without a reload.
func TestClientCertReloadedWithoutRestart(t *testing.T) {
	srv, opts := mutualTLSVault(t)
	first, renewed := clientCert(t, srv.MutualTLS.ClientCA), clientCert(t, srv.MutualTLS.ClientCA)
	untrusted := clientCert(t, certstest.MustNew(t, certstest.Options{}))
	dir := t.TempDir()
	opts.ClientCertFile, opts.ClientKeyFile = writePair(t, dir, first.CertPEM, first.KeyPEM)

	// As TestCAFileReloadedWithoutRestart: the slack is for a starved
	// machine; without a reload nothing changes however long the test waits.
	const every = 200 * time.Millisecond
	const within = every + 20*time.Second
	var logs vaultdev.LogLines
	opts.TLSFilesPoll, opts.Logger = every, logs.Logger()
	i, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	watchTLS(t, i)
	req := certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer}
	issue := func() error {
		_, err := i.Issue(t.Context(), req)
		return err
	}
	c := reloadCheck{i: i, logs: &logs, every: every, within: within, issue: issue, reloads: clientCertReloads, valid: clientCertValid,
		reloadedLog: certReloadedLog, rejectedLog: certRejectedLog, validLog: certValidLog}
	reloads := c.reloadsSoFar()

	if err := issue(); err != nil {
		t.Fatalf("Issue presenting a trusted client certificate: %v", err)
	}
	writePair(t, dir, untrusted.CertPEM, untrusted.KeyPEM)
	poll.Until(t, within, every/4, "issuance refused once a certificate of another CA is written", func() error {
		if err := issue(); err == nil || !strings.Contains(err.Error(), certRefused) {
			return fmt.Errorf("Issue: %v, want %q", err, certRefused)
		}
		return nil
	})
	c.assertReloads(t, reloads, 1)

	written := time.Now()
	writePair(t, dir, renewed.CertPEM, renewed.KeyPEM)
	poll.Until(t, within, every/4, "issuance once a renewed trusted certificate is written", issue)
	t.Logf("issued %s after the renewed certificate was written (polled every %s)", time.Since(written).Round(time.Millisecond), every)
	c.assertReloads(t, reloads, 2)

	// The renewed certificate with the key before it, as read between the
	// updates of two files written one after the other.
	c.assertKept(t, []string{opts.ClientCertFile, opts.ClientKeyFile, "private key does not match public key"}, func() {
		writePair(t, dir, renewed.CertPEM, untrusted.KeyPEM)
	})
	c.assertValidAgain(t, func() { writePair(t, dir, renewed.CertPEM, renewed.KeyPEM) })
	c.assertReloads(t, reloads, 2)
}

// TestClientCertPoll: what one poll does with the client certificate and
// its key, by what was read before (runPolls): a key that is not the
// certificate's, as read between the updates of the two files, is a
// problem like a missing file.
func TestClientCertPoll(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	a, b := clientCert(t, ca), clientCert(t, ca)
	pair := func(cert, key []byte) [][]byte { return [][]byte{cert, key} }
	built := errors.New("no client")
	runPolls(t, []string{"tls.crt", "tls.key"}, pair(a.CertPEM, a.KeyPEM), func(paths []string, log logr.Logger, use func([][]byte) error) *tlsInput {
		return clientCertInput(paths[0], paths[1], a.CertPEM, a.KeyPEM, log, func(cert, key []byte) error { return use(pair(cert, key)) })
	}, []pollCase{
		{"same pair", []pollStep{{pair(a.CertPEM, a.KeyPEM), nil, tlsUnchanged}, {pair(a.CertPEM, a.KeyPEM), nil, tlsUnchanged}}, 0, 0, pair(a.CertPEM, a.KeyPEM), 1},
		{"renewed pair", []pollStep{{pair(b.CertPEM, b.KeyPEM), nil, tlsReloaded}, {pair(b.CertPEM, b.KeyPEM), nil, tlsUnchanged}}, 0, 1, pair(b.CertPEM, b.KeyPEM), 1},
		{"half-written: the new certificate, the old key", []pollStep{
			{pair(b.CertPEM, a.KeyPEM), nil, tlsRejected}, {pair(b.CertPEM, a.KeyPEM), nil, tlsStillRejected}, {pair(b.CertPEM, b.KeyPEM), nil, tlsReloaded},
		}, 1, 1, pair(b.CertPEM, b.KeyPEM), 1},
		{"half-written: the old certificate, the new key", []pollStep{{pair(a.CertPEM, b.KeyPEM), nil, tlsRejected}, {pair(a.CertPEM, a.KeyPEM), nil, tlsRecovered}}, 1, 1, pair(a.CertPEM, a.KeyPEM), 1},
		{"the key missing, then not PEM: two problems", []pollStep{
			{pair(b.CertPEM, nil), nil, tlsRejected}, {pair(b.CertPEM, []byte("not a key\n")), nil, tlsRejected}, {pair(b.CertPEM, []byte("not a key\n")), nil, tlsStillRejected},
		}, 2, 0, pair(a.CertPEM, a.KeyPEM), 0},
		{"the certificate missing", []pollStep{{pair(nil, b.KeyPEM), nil, tlsRejected}}, 1, 0, pair(a.CertPEM, a.KeyPEM), 0},
		{"no client: kept, logged once, retried", []pollStep{
			{pair(b.CertPEM, b.KeyPEM), built, tlsRejected}, {pair(b.CertPEM, b.KeyPEM), built, tlsStillRejected}, {pair(b.CertPEM, b.KeyPEM), nil, tlsReloaded},
		}, 1, 1, pair(b.CertPEM, b.KeyPEM), 1},
	})
}

// TestDecide: what a poll does, from what it read and what it read before
// alone.
func TestDecide(t *testing.T) {
	a, b := [][]byte{[]byte("a")}, [][]byte{[]byte("b")}
	bad, other := errors.New("bad"), errors.New("other")
	for _, tc := range []struct {
		name    string
		inUse   [][]byte
		problem string
		read    [][]byte
		readErr error
		want    tlsOutcome
	}{
		{"the content in use", a, "", a, nil, tlsUnchanged},
		{"new content", a, "", b, nil, tlsReloaded},
		{"new content after a problem", a, "bad", b, nil, tlsReloaded},
		{"the content in use after a problem", a, "bad", a, nil, tlsRecovered},
		{"a problem", a, "", nil, bad, tlsRejected},
		{"the problem logged last", a, "bad", nil, bad, tlsStillRejected},
		{"another problem", a, "bad", nil, other, tlsRejected},
		{"one file more", a, "", append(a, []byte("b")), nil, tlsReloaded},
	} {
		if got := decide(tc.inUse, tc.problem, tc.read, tc.readErr); got != tc.want {
			t.Errorf("%s: decide = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestDueRetired: a client swapped out is closed from its closeAt on, not
// before.
func TestDueRetired(t *testing.T) {
	now := time.Now()
	early, due := retiredClient{closeAt: now.Add(time.Nanosecond)}, retiredClient{closeAt: now}
	gotDue, gotKeep := dueRetired([]retiredClient{early, due, early}, now)
	if len(gotDue) != 1 || gotDue[0] != due || len(gotKeep) != 2 || gotKeep[0] != early || gotKeep[1] != early {
		t.Errorf("dueRetired = %v, %v; want [due], [early early]", gotDue, gotKeep)
	}
	if gotDue, gotKeep := dueRetired(nil, now); gotDue != nil || gotKeep != nil {
		t.Errorf("dueRetired(nil) = %v, %v", gotDue, gotKeep)
	}
}

// TestSwappedClientConnectionsClosed: the connection of a call under way on
// a client swapped out (a TLS file changed) is closed once that call could
// have ended (the calls' timeout), not left to the transport's 90 s idle
// timeout; the idle ones are closed at the swap.
func TestSwappedClientConnectionsClosed(t *testing.T) {
	clearVaultTLSEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var idle, closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateIdle:
			idle.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	// As Vault's listener: the API client speaks HTTP/2, whose pool keeps
	// a connection in use at CloseIdleConnections (HTTP/1.1's closes it
	// once it is idle).
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	p := srv.Listener.Addr().(*net.TCPAddr).Port
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, certs.EncodeCertsPEM(srv.Certificate()), 0o600); err != nil {
		t.Fatal(err)
	}
	zero := 0
	i, err := New(t.Context(), Options{Host: "127.0.0.1", Port: p, Protocol: "https", Role: DefaultRole, Token: "t", CAFile: caFile, MaxRetries: &zero, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w := i.tlsWatcher()

	called := make(chan error, 1)
	go func() {
		_, err := i.client().Logical().ReadWithContext(context.Background(), "secret/x")
		called <- err
	}()
	<-entered
	if err := w.use(w.inUse); err != nil { // as for a changed file
		t.Fatal(err)
	}
	close(release)
	if err := <-called; err != nil {
		t.Fatalf("the call under way at the swap: %v", err)
	}
	// Its connection is now idle in the pool of the client swapped out.
	poll.Until(t, 30*time.Second, 10*time.Millisecond, "the connection idle", func() error {
		if idle.Load() == 0 {
			return errors.New("no connection idle")
		}
		return nil
	})
	if n := closed.Load(); n != 0 {
		t.Fatalf("%d connections closed before the call's timeout", n)
	}
	w.poll(time.Now().Add(time.Minute))
	poll.Until(t, 30*time.Second, 10*time.Millisecond, "the connection closed once the call's timeout passed", func() error {
		if closed.Load() == 0 {
			return errors.New("the connection is still open")
		}
		return nil
	})
	if len(w.retired) != 0 {
		t.Errorf("%d clients still retired after they were closed", len(w.retired))
	}
}

// TestClientCertProbeShared: a Vault that drops every connection fails
// every issuance; the probe that asks why runs once per period (10 s)
// however many issuances fail at once, and again after a client swap.
func TestClientCertProbeShared(t *testing.T) {
	clearVaultTLSEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close() // dropped before the handshake, as by a Vault going away
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	i, err := New(t.Context(), Options{Host: "127.0.0.1", Port: port, Protocol: "https", Role: DefaultRole, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// Longer than any stall of this test: only the swap may end a result.
	i.probe.every = time.Hour
	lost := &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}
	probes := func(n int) int32 {
		done := make(chan struct{})
		for range n {
			go func() {
				defer func() { done <- struct{}{} }()
				if alert, ok := i.clientCertRefused(lost); ok {
					t.Errorf("a dropped connection read as a refused client certificate (%s)", alert)
				}
			}()
		}
		for range n {
			<-done
		}
		return accepted.Load()
	}
	if got := probes(20); got != 1 {
		t.Errorf("20 failed issuances at once dialed Vault %d times to probe, want 1", got)
	}
	if _, err := i.swapClient(i.files); err != nil {
		t.Fatal(err)
	}
	if got := probes(5); got != 2 {
		t.Errorf("after a client swap: %d probes in all, want 2 (the old verdict dropped)", got)
	}
}
