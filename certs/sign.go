package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// createCertificate is x509.CreateCertificate without the verification of
// its own signature when key is Go's own in-memory ECDSA or RSA key.
//
// x509.CreateCertificate verifies every signature it makes against the
// signer's public key: a guard against crypto.Signers that misbehave (HSM
// and KMS plugins). For an in-memory Go key that verification is an ECDSA
// verify per leaf, the costliest step of a meshed pod's admission with an
// ECDSA CA (more than the signature: 28% of the handler's CPU). Go's RSA
// signing already checks its result against faults itself; its ECDSA signing
// has no plugin in between to misbehave, but it does not check that the key's
// private scalar is the one of its public key: NewAuthority does, once
// (ecdsaScalarMatches). So x509 still builds the to-be-signed certificate
// (every field and extension, encoded by x509), the signer stops it there
// through crypto.MessageSigner, and the TBS is signed here and wrapped in
// RFC 5280's Certificate: SEQUENCE { tbsCertificate, signatureAlgorithm (the
// TBS's own, as RFC 5280 requires), signature }.
// Any other signer keeps x509's check.
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) ([]byte, error) {
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	}
	capture := &tbsCapture{Signer: key}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, capture)
	switch {
	case err == nil:
		// x509 signed without asking the signer: keep its certificate.
		return der, nil
	case !errors.Is(err, errTBSCaptured):
		return nil, err
	}
	alg, err := tbsSignatureAlgorithm(capture.tbs)
	if err != nil {
		return nil, err
	}
	sig, err := crypto.SignMessage(key, rand.Reader, capture.tbs, capture.opts)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(capture.tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// errTBSCaptured ends x509.CreateCertificate once it has handed over the
// to-be-signed certificate.
var errTBSCaptured = errors.New("to-be-signed certificate captured")

// tbsCapture is the CA's key as x509 sees it (its Public decides the
// signature algorithm) that, asked to sign, keeps the message and its
// options and refuses.
type tbsCapture struct {
	crypto.Signer
	tbs  []byte
	opts crypto.SignerOpts
}

// SignMessage makes tbsCapture a crypto.MessageSigner, which x509 hands the
// whole TBS rather than its digest.
func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.tbs, c.opts = msg, opts
	return nil, errTBSCaptured
}

// tbsSignatureAlgorithm is the DER of the TBS's signature field: TBSCertificate
// ::= SEQUENCE { version [0] EXPLICIT OPTIONAL, serialNumber INTEGER,
// signature AlgorithmIdentifier, ... }.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, alg cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, errors.New("x509 produced a to-be-signed certificate without a signature algorithm")
	}
	return alg, nil
}

// ecdsaScalarMatches reports whether key, if an in-memory ECDSA key, has the
// private scalar of its own public key (true for any other key). KeyMatches
// compares public keys only, and Go's ECDSA signing uses D without checking
// it against X, Y: a key assembled with another scalar would sign leaves its
// certificate does not verify, which x509's check used to refuse and
// createCertificate no longer makes. Keys parsed from PEM or generated always
// match (their public key is computed from D).
func ecdsaScalarMatches(key crypto.Signer) bool {
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return true
	}
	d, err := k.Bytes()
	if err != nil {
		return false
	}
	derived, err := ecdsa.ParseRawPrivateKey(k.Curve, d)
	return err == nil && derived.PublicKey.Equal(&k.PublicKey)
}
