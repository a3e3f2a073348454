package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
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
)

// TestUntrustedVaultCertNamesTheCAFile: with --vault-ca-file given, a Vault
// certificate it does not verify is reported naming that file and the
// certificate's issuer, not as if the flag were missing ("give that CA with
// --vault-ca-file" to an operator who did). The common case is a Vault
// whose certificate comes from an intermediate CA while its listener's
// tls_cert_file holds only the certificate: the file holds the root, the
// root is right, and what is missing is the intermediate, which the error
// must say. Sent by the listener, or put in the file, the intermediate
// makes the same root file work.
func TestUntrustedVaultCertNamesTheCAFile(t *testing.T) {
	for _, env := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME"} {
		t.Setenv(env, "")
	}
	root, rootKey := chainCA(t, "corp-root", nil, nil)
	inter, interKey := chainCA(t, "vault-intermediate", root, rootKey)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "vault"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, inter, &leafKey.PublicKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, certs.EncodeCertsPEM(root), 0o600); err != nil {
		t.Fatal(err)
	}
	bothFile := filepath.Join(dir, "root-and-intermediate.pem")
	if err := os.WriteFile(bothFile, certs.EncodeCertsPEM(root, inter), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(chain ...[]byte) (int, *atomic.Int32) {
		var called atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			called.Add(1)
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: leafKey}}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		return p, &called
	}
	issue := func(port int, caFile string) error {
		zero := 0
		i, err := New(context.Background(), Options{Host: "127.0.0.1", Port: port, Protocol: "https", Role: DefaultRole, Token: "t", CAFile: caFile, MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		_, err = i.Issue(context.Background(), certs.Request{CommonName: "a.b.svc", DNSNames: []string{"a.b.svc"}, Validity: time.Hour, Usage: certs.UsageServer})
		return err
	}

	leafOnly, calledLeafOnly := serve(leafDER)
	err = issue(leafOnly, rootFile)
	if err == nil || calledLeafOnly.Load() != 0 {
		t.Fatalf("Vault sending no intermediate, root in the CA file: err = %v, calls %d; want a TLS refusal", err, calledLeafOnly.Load())
	}
	t.Logf("Issue: %v", err)
	for _, want := range []string{
		`--vault-ca-file "` + rootFile + `"`, // the file in use, not "give one"
		`"CN=vault-intermediate"`,            // who issued Vault's certificate
		"intermediate",                       // and what to do about it
		"x509: certificate signed by unknown authority",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "give that CA with --vault-ca-file") {
		t.Errorf("err = %v: --vault-ca-file is given", err)
	}

	// The fixes the error names: the file holding the intermediate too, or
	// the listener sending it. Either way Vault is reached (its 403 here).
	if err := issue(leafOnly, bothFile); err == nil || !strings.Contains(err.Error(), "denied the token") {
		t.Errorf("intermediate in the CA file: err = %v, want Vault reached (403)", err)
	}
	withChain, _ := serve(leafDER, inter.Raw)
	if err := issue(withChain, rootFile); err == nil || !strings.Contains(err.Error(), "denied the token") {
		t.Errorf("Vault sending its intermediate: err = %v, want Vault reached (403)", err)
	}
}

// chainCA is a CA certificate named cn and its key, signed by parent (self
// signed when nil).
func chainCA(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}
