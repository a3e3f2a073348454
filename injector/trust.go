package injector

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TrustState is what every bootstrap Secret must follow during and after a
// root rotation (pure data; TrustController reads it from the CA).
type TrustState struct {
	// Bundle is every root a pod must trust now: cacert.pem holds exactly
	// these (old and new during a rotation, new only after it).
	Bundle *certs.Bundle
	// Retiring is the root leaving Bundle at the end of the rotation (the
	// previous root while the new one signs); nil when none is. Certificates
	// it signed are re-issued while it is still trusted.
	Retiring *x509.Certificate
	// Changed is when the trust last changed, when the provider records it
	// (tresor: the rotation phase's start); zero otherwise.
	Changed time.Time
}

// TrustPlan is what one bootstrap Secret needs; the zero value means
// nothing.
type TrustPlan struct {
	// CACert is the cacert.pem to write; nil when the Secret already holds
	// the bundle.
	CACert []byte
	// Reissue: the certificate was signed by a root that is retiring or no
	// longer trusted; a new key and certificate for Request replace it.
	Reissue bool
	Request certs.Request
	// Reason says why, for logs.
	Reason string
}

// Changes reports whether the Secret must be written.
func (p TrustPlan) Changes() bool { return p.CACert != nil || p.Reissue }

// PlanTrust decides what bootstrap Secret s needs so that pods trust ts's
// roots and its certificate stays verifiable once the retiring root is gone.
// A certificate is re-issued, with the same CN (proxy uuid, ServiceAccount,
// namespace) and key algorithm, only when one of ts's roots signed it (so
// the identity is one our CA granted) and that root is retiring or no longer
// in the bundle's future; a certificate no root of ts signed (a CA Secret
// replaced abruptly) is an error, never re-issued on the Secret's word.
func PlanTrust(s *corev1.Secret, ts TrustState, trustDomain string, validity time.Duration, now time.Time) (TrustPlan, error) {
	ref := s.Namespace + "/" + s.Name
	if ts.Bundle == nil || ts.Bundle.Len() == 0 {
		return TrustPlan{}, fmt.Errorf("bootstrap Secret %s: the mesh trust bundle is empty", ref)
	}
	var plan TrustPlan
	want := ts.Bundle.PEM()
	if have, err := certs.ParseBundle(now, s.Data[CACertKey]); err != nil || !have.Equal(ts.Bundle) {
		plan.CACert = want
		plan.Reason = fmt.Sprintf("%s does not hold the mesh's %d root(s)", CACertKey, ts.Bundle.Len())
	}
	chain, err := certs.ParseCertsPEM(s.Data[RepoCertKey])
	if err != nil {
		return plan, fmt.Errorf("bootstrap Secret %s: %s: %w", ref, RepoCertKey, err)
	}
	leaf := chain[0]
	var signer *x509.Certificate
	for _, root := range ts.Bundle.Certificates() {
		if signedBy(chain, root) {
			signer = root
			break
		}
	}
	if signer == nil && ts.Retiring != nil && signedBy(chain, ts.Retiring) {
		// Already gone from the bundle (expired, or dropped early), still known.
		signer = ts.Retiring
	}
	switch {
	case signer == nil:
		return plan, fmt.Errorf("bootstrap Secret %s: %s %q was signed by none of the mesh's %d root(s) (issuer %q): it cannot be re-issued on its own word; the pod gets a new Secret when it is re-created",
			ref, RepoCertKey, leaf.Subject.CommonName, ts.Bundle.Len(), leaf.Issuer.String())
	case ts.Retiring == nil || !bytes.Equal(signer.Raw, ts.Retiring.Raw):
		return plan, nil
	}
	uuid := s.Labels[ProxyUUIDLabel]
	if s.Name != BootstrapSecretName(uuid) {
		return plan, fmt.Errorf("bootstrap Secret %s: label %s=%q does not match the name (want %s)", ref, ProxyUUIDLabel, uuid, BootstrapSecretName(uuid))
	}
	if err := checkBootstrapCN(leaf.Subject.CommonName, uuid, s.Namespace, trustDomain); err != nil {
		return plan, fmt.Errorf("bootstrap Secret %s: %s: %w", ref, RepoCertKey, err)
	}
	alg, err := certs.AlgorithmOf(leaf.PublicKey)
	if err != nil {
		return plan, fmt.Errorf("bootstrap Secret %s: %s key: %w", ref, RepoCertKey, err)
	}
	plan.CACert = want
	plan.Reissue = true
	plan.Request = certRequest(leaf.Subject.CommonName, alg, validity)
	plan.Reason = fmt.Sprintf("certificate signed by the retiring root %q (serial %s)", ts.Retiring.Subject.CommonName, ts.Retiring.SerialNumber.Text(16))
	return plan, nil
}

// TrustPatch is the JSON merge patch that applies plan to s: only the keys
// that change, and s's resourceVersion, so the apiserver refuses it with a
// conflict when anyone (another replica, FSM's controller appending an
// owner) wrote s since it was read: an Update's precondition, with the patch
// verb the chart already grants.
func TrustPatch(s *corev1.Secret, plan TrustPlan, cert *certs.Certificate) ([]byte, error) {
	if s.ResourceVersion == "" {
		return nil, fmt.Errorf("bootstrap Secret %s/%s: no resourceVersion to guard the write with", s.Namespace, s.Name)
	}
	data := map[string][]byte{}
	if plan.CACert != nil {
		data[CACertKey] = plan.CACert
	}
	if plan.Reissue {
		if cert == nil {
			return nil, fmt.Errorf("bootstrap Secret %s/%s: re-issue planned without a certificate", s.Namespace, s.Name)
		}
		data[RepoCertKey], data[RepoKeyKey] = cert.CertPEM, cert.KeyPEM
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]string{"resourceVersion": s.ResourceVersion},
		"data":     data, // []byte encodes as base64, as Secret data does
	})
}

// checkBootstrapCN: cn is <uuid>.sidecar.<serviceaccount>.<namespace>.<trust
// domain> for this Secret's uuid and namespace, so a Secret copied or forged
// into another namespace never gets a certificate for someone else, and its
// ServiceAccount holds no dot (checkServiceAccountForCN): FSM's injector
// signed such CNs, and a pod it meshed so keeps its certificate until it is
// re-created, when the admission denies it.
func checkBootstrapCN(cn, uuid, namespace, trustDomain string) error {
	if trustDomain == "" {
		trustDomain = defaultTrustDomain
	}
	prefix, suffix := uuid+".sidecar.", "."+namespace+"."+trustDomain
	if uuid == "" || !strings.HasPrefix(cn, prefix) || !strings.HasSuffix(cn, suffix) || len(cn) <= len(prefix)+len(suffix) {
		return fmt.Errorf("CN %q is not %s<serviceaccount>%s", cn, prefix, suffix)
	}
	if err := checkServiceAccountForCN(cn[len(prefix):len(cn)-len(suffix)], namespace); err != nil {
		return fmt.Errorf("CN %q: %w", cn, err)
	}
	return nil
}

// signedBy reports whether root signed chain's leaf, directly or through
// the chain's intermediates. Signatures only, no validity periods: the old
// and new roots share a subject, and certificates of a retiring root must be
// found whatever their dates.
func signedBy(chain []*x509.Certificate, root *x509.Certificate) bool {
	cur := chain[0]
	for range chain {
		if bytes.Equal(cur.RawIssuer, root.RawSubject) && cur.CheckSignatureFrom(root) == nil {
			return true
		}
		var parent *x509.Certificate
		for _, c := range chain[1:] {
			if c != cur && bytes.Equal(cur.RawIssuer, c.RawSubject) && cur.CheckSignatureFrom(c) == nil {
				parent = c
				break
			}
		}
		if parent == nil {
			return false
		}
		cur = parent
	}
	return false
}
