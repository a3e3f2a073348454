package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCreateCertificateAsX509 checks that a certificate signed without x509's
// self-verification is the one x509.CreateCertificate makes: the same
// to-be-signed bytes (x509 encodes them in both), the same outer algorithm,
// and a signature the CA's public key verifies. ECDSA signatures are
// randomized, so whole certificates cannot be compared.
func TestCreateCertificateAsX509(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ca     KeyAlgorithm
		leaf   KeyAlgorithm
		sigAlg x509.SignatureAlgorithm
	}{
		{"ecdsa P-256 CA", ECDSAP256, ECDSAP256, 0},
		{"ecdsa P-384 CA, RSA leaf", ECDSAP384, RSA2048, 0},
		{"ecdsa P-256 CA signing with SHA-384", ECDSAP256, ECDSAP256, x509.ECDSAWithSHA384},
		{"rsa CA", RSA2048, ECDSAP256, 0},
		{"rsa CA with PSS", RSA3072, RSA2048, x509.SHA256WithRSAPSS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := mustRoot(t, tc.ca, 48*time.Hour, t0)
			leafKey, err := GenerateKey(tc.leaf)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(0x1234567890),
				Subject:               pkix.Name{CommonName: "p.sidecar.sa.ns.cluster.local", Organization: []string{RootOrganization}},
				DNSNames:              []string{"p.sidecar.sa.ns.cluster.local"},
				IPAddresses:           []net.IP{net.ParseIP("10.0.0.1")},
				NotBefore:             t0.Add(-time.Minute),
				NotAfter:              t0.Add(time.Hour),
				KeyUsage:              x509.KeyUsageDigitalSignature,
				ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				BasicConstraintsValid: true,
				SignatureAlgorithm:    tc.sigAlg,
			}
			want, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, leafKey.Public(), ca.Key)
			if err != nil {
				t.Fatal(err)
			}
			der, err := createCertificate(tmpl, ca.Cert, leafKey.Public(), ca.Key)
			if err != nil {
				t.Fatalf("createCertificate: %v", err)
			}
			got, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("parsing the certificate: %v", err)
			}
			ref, err := x509.ParseCertificate(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.RawTBSCertificate, ref.RawTBSCertificate) {
				t.Errorf("to-be-signed certificate differs from x509's:\n got %x\nwant %x", got.RawTBSCertificate, ref.RawTBSCertificate)
			}
			if got.SignatureAlgorithm != ref.SignatureAlgorithm {
				t.Errorf("signature algorithm = %s, x509 chose %s", got.SignatureAlgorithm, ref.SignatureAlgorithm)
			}
			if err := got.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("the CA does not verify the signature: %v", err)
			}
			// Nothing after the signature: DER is one value.
			if len(der) != len(got.Raw) {
				t.Errorf("%d bytes after the certificate", len(der)-len(got.Raw))
			}
		})
	}
}

// faultySigner is a crypto.Signer outside Go's own keys (as an HSM or KMS
// plugin is) that returns a signature the key does not make.
type faultySigner struct{ crypto.Signer }

func (f faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err != nil {
		return nil, err
	}
	sig[len(sig)-1] ^= 1
	return sig, nil
}

// TestCreateCertificateKeepsCheckForOtherSigners: x509's verification of the
// signer is skipped only for Go's in-memory keys; a plugin's bad signature is
// still refused.
func TestCreateCertificateKeepsCheckForOtherSigners(t *testing.T) {
	for _, alg := range []KeyAlgorithm{ECDSAP256, RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			ca := mustRoot(t, alg, time.Hour, t0)
			signer := &Authority{Cert: ca.Cert, Key: faultySigner{ca.Key}}
			_, err := signer.Sign(Request{CommonName: "x", Validity: time.Minute, Usage: UsageServer}, ca.Key.Public(), t0)
			if err == nil || !strings.Contains(err.Error(), "signature returned by signer is invalid") {
				t.Fatalf("err = %v, want x509's check to refuse the faulty signer", err)
			}
		})
	}
}

// TestNewAuthorityRefusesECDSAKeyNotItsCertificates: an ECDSA key whose
// public half is the CA's but whose private scalar is another makes
// signatures the CA's certificate does not verify. x509's check of its own
// signature refused it at every leaf; createCertificate skips that check for
// Go's keys, so NewAuthority must refuse it: never a nil error with a leaf
// the CA does not verify.
func TestNewAuthorityRefusesECDSAKeyNotItsCertificates(t *testing.T) {
	for _, alg := range []KeyAlgorithm{ECDSAP256, ECDSAP384} {
		t.Run(string(alg), func(t *testing.T) {
			ca := mustRoot(t, alg, time.Hour, t0)
			other := mustRoot(t, alg, time.Hour, t0).Key.(*ecdsa.PrivateKey)
			// Only the deprecated big.Int field can assemble such a key:
			// parsed and generated keys derive their public half from D.
			bad := &ecdsa.PrivateKey{PublicKey: ca.Key.(*ecdsa.PrivateKey).PublicKey, D: other.D} //nolint:staticcheck // the mismatched key under test
			a, err := NewAuthority(ca.Cert, bad)
			if err == nil {
				leaf, err := a.Sign(Request{CommonName: "x", Validity: time.Minute, Usage: UsageServer}, other.Public(), t0)
				if err == nil {
					t.Fatalf("NewAuthority accepted a key whose private scalar is not the certificate's (leaf verifies: %v)", leaf.CheckSignatureFrom(ca.Cert))
				}
				t.Fatalf("NewAuthority accepted a key whose private scalar is not the certificate's; Sign: %v", err)
			}
			if !strings.Contains(err.Error(), "does not match") {
				t.Errorf("err = %v", err)
			}
			if _, err := NewAuthority(ca.Cert, ca.Key); err != nil {
				t.Errorf("NewAuthority refused the CA's own key: %v", err)
			}
		})
	}
}
