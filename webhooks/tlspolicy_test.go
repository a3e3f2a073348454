package webhooks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCipherSuites(t *testing.T) {
	for _, tc := range []struct {
		names   []string
		want    []uint16
		wantErr string
	}{
		{names: nil, want: nil},
		{names: []string{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"},
			want: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{names: []string{"TLS_RSA_WITH_AES_128_GCM_SHA256"}, wantErr: "TLS_RSA_WITH_AES_128_GCM_SHA256 is insecure"},
		{names: []string{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"}, wantErr: "is insecure"},
		{names: []string{"TLS_CHACHA20_POLY1305_SHA256"}, wantErr: "TLS_CHACHA20_POLY1305_SHA256 is a TLS 1.3 suite"},
		{names: []string{"tls_ecdhe_rsa_with_aes_128_gcm_sha256"}, wantErr: "is not a TLS cipher suite; use any of TLS_ECDHE_"},
		{names: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, wantErr: "listed twice"},
		// kube-apiserver's --tls-cipher-suites value of the CIS Kubernetes
		// Benchmark, as hardened clusters carry it: the ChaCha20 suites by
		// the names kube-apiserver keeps for them (crypto/tls's constants
		// of those names too), without _SHA256.
		{names: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
			"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
			want: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
				tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
		{names: []string{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"}, wantErr: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305 is listed twice"},
	} {
		got, err := ParseCipherSuites(tc.names)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCipherSuites(%q) error %v, want %q", tc.names, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCipherSuites(%q) = %v, %v; want %v", tc.names, got, err, tc.want)
		}
	}
	// What the error offers is what is accepted, and never an insecure or a
	// TLS 1.3 suite.
	offered := SecureCipherSuiteNames()
	if _, err := ParseCipherSuites(offered); err != nil {
		t.Errorf("the suites the errors offer are refused: %v", err)
	}
	for _, s := range tls.InsecureCipherSuites() {
		if slices.Contains(offered, s.Name) {
			t.Errorf("insecure %s offered", s.Name)
		}
	}
	for _, id := range DefaultCipherSuites() {
		if !slices.Contains(offered, tls.CipherSuiteName(id)) {
			t.Errorf("default suite %s is not one ParseCipherSuites accepts", tls.CipherSuiteName(id))
		}
	}
}

func TestParseTLSVersion(t *testing.T) {
	for name, want := range map[string]uint16{"VersionTLS12": tls.VersionTLS12, "VersionTLS13": tls.VersionTLS13, "VersionTLS11": 0, "1.3": 0, "": 0} {
		got, err := ParseTLSVersion(name)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("ParseTLSVersion(%q) = %#04x, %v; want %#04x", name, got, err, want)
		}
	}
}

func TestTLSPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p       TLSPolicy
		wantErr string
	}{
		{p: TLSPolicy{}},
		{p: TLSPolicy{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}},
		{p: TLSPolicy{MinVersion: tls.VersionTLS13}},
		{p: TLSPolicy{MinVersion: tls.VersionTLS13, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, wantErr: "MinVersion is TLS 1.3"},
		{p: TLSPolicy{MinVersion: tls.VersionTLS11}, wantErr: "neither TLS 1.2 nor TLS 1.3"},
	} {
		err := tc.p.validate()
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: validate() = %v, want %q", tc.p, err, tc.wantErr)
		}
	}
}

// TestTLSPolicyHandshakes: what a client negotiates with a listener
// configured by the policy, over a real TLS handshake.
func TestTLSPolicyHandshakes(t *testing.T) {
	cert := selfSignedECDSA(t)
	cbc := tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
	gcm := tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	for _, tc := range []struct {
		name        string
		policy      TLSPolicy
		client      *tls.Config
		wantVersion uint16 // 0: the handshake fails
		wantSuite   uint16
	}{
		{name: "default: TLS 1.3", client: &tls.Config{}, wantVersion: tls.VersionTLS13},
		{name: "default: a TLS 1.2 client with AEAD", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{gcm}},
			wantVersion: tls.VersionTLS12, wantSuite: gcm},
		{name: "default: a TLS 1.2 client with CBC only", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cbc}}},
		{name: "default: TLS 1.1 refused", client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{name: "1.3 only: a TLS 1.2 client refused", policy: TLSPolicy{MinVersion: tls.VersionTLS13},
			client: &tls.Config{MaxVersion: tls.VersionTLS12}},
		{name: "1.3 only: TLS 1.3", policy: TLSPolicy{MinVersion: tls.VersionTLS13}, client: &tls.Config{}, wantVersion: tls.VersionTLS13},
		{name: "CBC chosen: a CBC client", policy: TLSPolicy{CipherSuites: []uint16{cbc}},
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{gcm, cbc}}, wantVersion: tls.VersionTLS12, wantSuite: cbc},
		{name: "CBC chosen: an AEAD-only client refused", policy: TLSPolicy{CipherSuites: []uint16{cbc}},
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{gcm}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := &tls.Config{}
			tc.policy.apply(server, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil })
			client := tc.client.Clone()
			client.InsecureSkipVerify = true //nolint:gosec // the handshake's parameters are under test, not the peer
			state, err := handshake(t, server, client)
			if tc.wantVersion == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded (%s, %s), want it refused", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if state.Version != tc.wantVersion || (tc.wantSuite != 0 && state.CipherSuite != tc.wantSuite) {
				t.Errorf("negotiated %s %s, want %s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite),
					tls.VersionName(tc.wantVersion), tls.CipherSuiteName(tc.wantSuite))
			}
		})
	}
}

// handshake runs one TLS handshake between server and client over loopback
// and returns what the client negotiated.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = c.(*tls.Conn).Handshake()
	}()
	defer func() { <-done }()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: client}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

func selfSignedECDSA(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
