package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// KeyAlgorithm is the type and size of a private key. The zero value means
// "the provider's default".
type KeyAlgorithm string

// Supported key algorithms.
const (
	RSA2048   KeyAlgorithm = "RSA2048"
	RSA3072   KeyAlgorithm = "RSA3072"
	RSA4096   KeyAlgorithm = "RSA4096"
	ECDSAP256 KeyAlgorithm = "ECDSAP256"
	ECDSAP384 KeyAlgorithm = "ECDSAP384"

	// DefaultKeyAlgorithm is FSM's: RSA 2048 for the root and every leaf.
	DefaultKeyAlgorithm = RSA2048
)

// RSA key sizes the mesh issues leaf keys in: every size MeshConfig's
// certificate.certKeyBitSize allows (FSM documents 2048-4096), not only the
// named ones above. KeyAlgorithm "RSA<bits>" names each of them.
const (
	MinRSAKeyBits = 2048
	MaxRSAKeyBits = 4096
)

// KeyAlgorithms lists every named algorithm, in the order flags show them.
var KeyAlgorithms = []KeyAlgorithm{RSA2048, RSA3072, RSA4096, ECDSAP256, ECDSAP384}

// ParseKeyAlgorithm accepts the names above case-insensitively, with or
// without a dash ("rsa-2048", "ecdsa-p256").
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	norm := strings.ToUpper(strings.NewReplacer("-", "", "_", "").Replace(strings.TrimSpace(s)))
	for _, a := range KeyAlgorithms {
		if string(a) == norm {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown key algorithm %q: must be one of %v", s, KeyAlgorithms)
}

// RSAKeyAlgorithm maps an RSA key size (MeshConfig certKeyBitSize) to its
// algorithm: RSA2048 for 2048, "RSA2560" for 2560.
func RSAKeyAlgorithm(bits int) (KeyAlgorithm, error) {
	if bits < MinRSAKeyBits || bits > MaxRSAKeyBits {
		return "", fmt.Errorf("unsupported RSA key size %d: must be %d to %d bits", bits, MinRSAKeyBits, MaxRSAKeyBits)
	}
	return KeyAlgorithm("RSA" + strconv.Itoa(bits)), nil
}

// RSABits is the key size of an RSA algorithm, 0 for any other (or for a
// size outside MinRSAKeyBits-MaxRSAKeyBits).
func (a KeyAlgorithm) RSABits() int {
	digits, ok := strings.CutPrefix(string(a), "RSA")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < MinRSAKeyBits || n > MaxRSAKeyBits || strconv.Itoa(n) != digits {
		return 0
	}
	return n
}

// OrDefault returns a, or DefaultKeyAlgorithm when a is empty.
func (a KeyAlgorithm) OrDefault() KeyAlgorithm {
	if a == "" {
		return DefaultKeyAlgorithm
	}
	return a
}

// Validate reports whether a is a supported algorithm (empty is allowed and
// means the default).
func (a KeyAlgorithm) Validate() error {
	if a == "" || slices.Contains(KeyAlgorithms, a) || a.RSABits() != 0 {
		return nil
	}
	return fmt.Errorf("unknown key algorithm %q: must be one of %v or RSA<%d-%d>", string(a), KeyAlgorithms, MinRSAKeyBits, MaxRSAKeyBits)
}

// GenerateKey creates a new private key of algorithm a (the default when a is
// empty).
func GenerateKey(a KeyAlgorithm) (crypto.Signer, error) {
	if bits := a.OrDefault().RSABits(); bits != 0 {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	switch a {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return nil, fmt.Errorf("unknown key algorithm %q: must be one of %v or RSA<%d-%d>", string(a), KeyAlgorithms, MinRSAKeyBits, MaxRSAKeyBits)
	}
}

// AlgorithmOf tells which supported algorithm pub is, or an error for keys we
// do not issue.
func AlgorithmOf(pub crypto.PublicKey) (KeyAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return RSAKeyAlgorithm(k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	default:
		return "", fmt.Errorf("unsupported public key type %T", pub)
	}
}

// EncodeKeyPEM marshals key as a PKCS#8 "PRIVATE KEY" PEM block (a copy of
// the encoding WithEncodedPEM made, if it made one).
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	if k, ok := key.(*encodedKey); ok {
		return bytes.Clone(k.pem), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshalling private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// encodedKey is a private key with its PKCS#8 PEM encoded ahead of use.
type encodedKey struct {
	crypto.Signer
	pem []byte
}

// WithEncodedPEM returns key carrying its PKCS#8 PEM, so that EncodeKeyPEM
// on a request path copies bytes instead of marshalling (for an ECDSA P-256
// key, marshalling re-derives the public point: about a tenth of issuing a
// certificate). Key pools call it while idle. The result signs and has the
// public key of key; a key already carrying its PEM is returned as is.
func WithEncodedPEM(key crypto.Signer) (crypto.Signer, error) {
	if _, ok := key.(*encodedKey); ok {
		return key, nil
	}
	pem, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &encodedKey{Signer: key, pem: pem}, nil
}

// ParseKeyPEM reads the first private key in data: PKCS#8, PKCS#1 ("RSA
// PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"), as Vault, cert-manager, openssl
// and FSM write them.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s PEM block: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
	}
}

// EncodeCertsPEM concatenates certs as "CERTIFICATE" PEM blocks.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParseCertsPEM parses every "CERTIFICATE" block in data, in order; other
// block types are skipped. It fails when a certificate does not parse or when
// there is none.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// KeyMatches reports whether key is the private half of pub.
func KeyMatches(key crypto.Signer, pub crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := key.Public().(equaler)
	return ok && e.Equal(pub)
}
