package vault

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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
	// client certificate presented, or that none is: from Vault's alert, or
	// (connLost) from a connection it closed, as HTTP/2 often reports it.
	certRefused  = "refused the TLS client certificate ("
	certRequired = "requires a TLS client certificate, and this server presents none"
	connClosed   = "closed the connection"
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
	})
	for _, tc := range []struct {
		name    string
		pair    *certs.Certificate
		refused string // from Vault's alert; else connClosed
		want    []string
	}{
		{"without a client certificate", nil, certRequired, []string{"--vault-client-cert-file and --vault-client-key-file", "fsm.vault.clientCertSecret"}},
		{"with a certificate of another CA", other, certRefused, []string{"tls_client_ca_file"}},
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
			if !strings.Contains(err.Error(), tc.refused) && !strings.Contains(err.Error(), connClosed) {
				t.Errorf("err = %v\nwant it to say %q or %q", err, tc.refused, connClosed)
			}
			for _, want := range append(tc.want, srv.MutualTLS.Addr) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v\nwant it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "unreachable") {
				t.Errorf("err = %v: Vault was reached", err)
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
		if err := issue(); err == nil || !strings.Contains(err.Error(), certRefused) && !strings.Contains(err.Error(), connClosed) {
			return fmt.Errorf("Issue: %v, want %q or %q", err, certRefused, connClosed)
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

// TestExplainClientCertErrors: what an issuance says for each way the API
// client reports a refused client certificate (the alert read, or only the
// connection closed under HTTP/2), with and without one configured, and
// that other failures keep their words.
func TestExplainClientCertErrors(t *testing.T) {
	alert := func(text string) error {
		return &url.Error{Op: "Get", URL: "https://vault:8200/v1/pki/ca_chain", Err: &net.OpError{Op: "remote error", Err: errors.New("tls: " + text)}}
	}
	lost := []error{
		errors.New(`Get "https://vault:8200/v1/pki/ca_chain": ` + h2NotEstablished),
		&url.Error{Op: "Get", URL: "https://vault:8200/v1/pki/ca_chain", Err: &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}},
		&url.Error{Op: "Get", URL: "https://vault:8200/v1/pki/ca_chain", Err: io.EOF},
	}
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	noCert := "give one Vault trusts with --vault-client-cert-file and --vault-client-key-file (chart: fsm.vault.clientCertSecret)"
	withCert := `--vault-client-cert-file "/etc/c/tls.crt" must be valid and signed by a CA of the tls_client_ca_file of Vault's listener`
	type tc struct {
		protocol, certFile string
		err                error
		want               []string
		not                string
	}
	cases := []tc{
		{"https", "", alert("certificate required"), []string{certRequired + " (certificate required)", noCert}, "unreachable"},
		{"https", "/etc/c/tls.crt", alert("unknown certificate authority"), []string{certRefused + "unknown certificate authority)", withCert}, "unreachable"},
		{"https", "", alert("handshake failure"), []string{"is unreachable"}, "client certificate"},
		{"https", "", refused, []string{"is unreachable"}, "client certificate"},
		{"http", "", lost[2], []string{"is unreachable"}, "client certificate"},
	}
	for _, err := range lost {
		cases = append(cases, tc{"https", "", err, []string{connClosed, "if its listener requires TLS client certificates", noCert}, "unreachable"},
			tc{"https", "/etc/c/tls.crt", err, []string{connClosed, withCert}, "unreachable"})
	}
	for _, c := range cases {
		i := &Issuer{opts: Options{Host: "vault", Port: 8200, Protocol: c.protocol, ClientCertFile: c.certFile}}
		got := i.explain("pki/ca_chain", c.err)
		for _, w := range c.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("%s %q, %v: %v\nwant it to contain %q", c.protocol, c.certFile, c.err, got, w)
			}
		}
		if strings.Contains(got.Error(), c.not) {
			t.Errorf("%s %q, %v: %v\nwant no %q", c.protocol, c.certFile, c.err, got, c.not)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%v does not wrap %v", got, c.err)
		}
	}
}
