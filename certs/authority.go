package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Root CA subject: the one FSM documents (its code used C=ZH, L=CN; the
// documented subject is what users check with openssl).
const (
	RootCommonName   = "fsm-ca.flomesh.io"
	RootOrganization = "Flomesh Service Mesh"
	RootLocality     = "CA"
	RootCountry      = "US"
)

// Authority is a CA certificate with its private key, able to sign leaves.
// It is immutable once shared and safe for concurrent use.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Backdate moves the NotBefore of signed leaves earlier; zero (or less)
	// means ClockSkew. Tests of certificates living seconds set less, as a Vault
	// role's not_before_duration does.
	Backdate time.Duration
}

// NewAuthority checks that cert is a CA allowed to sign certificates and that
// key is its private key (for an in-memory ECDSA key, its private scalar too:
// createCertificate does not verify what that key signs).
func NewAuthority(cert *x509.Certificate, key crypto.Signer) (*Authority, error) {
	if cert == nil || key == nil {
		return nil, errors.New("CA certificate and key are both required")
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("certificate %q is not a CA (basicConstraints CA:TRUE missing)", cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %q lacks the keyCertSign key usage", cert.Subject.CommonName)
	}
	if !KeyMatches(key, cert.PublicKey) || !ecdsaScalarMatches(key) {
		return nil, fmt.Errorf("private key does not match CA certificate %q", cert.Subject.CommonName)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// NewRootAuthority creates a self-signed root with FSM's subject: IsCA,
// keyCertSign+cRLSign, 128-bit random serial, valid for validity from now
// (NotBefore backdated by ClockSkew).
func NewRootAuthority(alg KeyAlgorithm, validity time.Duration, now time.Time) (*Authority, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("root CA validity must be positive, got %s", validity)
	}
	key, err := GenerateKey(alg)
	if err != nil {
		return nil, fmt.Errorf("generating root CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   RootCommonName,
			Organization: []string{RootOrganization},
			Locality:     []string{RootLocality},
			Country:      []string{RootCountry},
		},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing root CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new root CA: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Sign issues a leaf for req with public key pub, valid from now. A validity
// that would outlive the CA is cut at the CA's NotAfter: a leaf cannot be
// verified past its root anyway, and the returned NotAfter stays truthful.
func (a *Authority) Sign(req Request, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	der, _, err := a.signDER(req, pub, now)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate for %q: %w", req.CommonName, err)
	}
	return cert, nil
}

// signDER is Sign without parsing the result: the DER and its NotAfter as
// the certificate encodes it (whole seconds, UTC).
func (a *Authority) signDER(req Request, pub crypto.PublicKey, now time.Time) ([]byte, time.Time, error) {
	if err := req.Validate(); err != nil {
		return nil, time.Time{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, time.Time{}, err
	}
	notAfter := now.Add(req.Validity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, time.Time{}, fmt.Errorf("CA %q expired at %s", a.Cert.Subject.CommonName, a.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	keyUsage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		// RSA key exchange (TLS 1.2 non-ECDHE suites) encrypts with the key.
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName},
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		NotBefore:             now.Add(-a.backdate()),
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           req.Usage.ExtKeyUsages(),
		BasicConstraintsValid: true,
	}
	if req.Organization != "" {
		tmpl.Subject.Organization = []string{req.Organization}
	}
	der, err := createCertificate(tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("signing certificate for %q: %w", req.CommonName, err)
	}
	// x509 encodes validity in whole seconds (UTCTime/GeneralizedTime, Z),
	// which is what parsing der would return.
	return der, notAfter.Truncate(time.Second).UTC(), nil
}

func (a *Authority) backdate() time.Duration {
	if a.Backdate <= 0 {
		return ClockSkew
	}
	return a.Backdate
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial is a 128-bit random serial, never zero (RFC 5280 wants it
// positive).
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// Issue signs req for key (which the caller took from a key pool or
// generated) and packages the result with caBundle, the PEM of every trusted
// root. This is the whole hot path of a locally signed certificate: one
// signature and two PEM encodings; the certificate just made is neither
// parsed back nor, with the CA's own Go key, verified (createCertificate).
func (a *Authority) Issue(req Request, key crypto.Signer, caBundle []byte, now time.Time) (*Certificate, error) {
	der, notAfter, err := a.signDER(req, key.Public(), now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &Certificate{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   keyPEM,
		CABundle: append([]byte(nil), caBundle...),
		NotAfter: notAfter,
	}, nil
}
