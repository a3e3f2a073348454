package servingcert

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// maxAttempts bounds the read-decide-write loop when other replicas write
// the same Secret concurrently; each lost race means another replica wrote a
// cert that the next read will most likely accept.
const maxAttempts = 5

// Store keeps a webhook's serving cert in its Secret. Every replica runs the
// same Store: creation is create-if-absent and updates are guarded by
// resourceVersion, so concurrent replicas converge on one cert and a replica
// that loses a race adopts the winner's cert instead of overwriting it.
type Store struct {
	Client kubernetes.Interface
	Issuer certs.Issuer
	Log    logr.Logger
	// RenewFraction of the lifetime after which a cert is renewed (default
	// certs.DefaultRenewFraction), less the jitter of certs.Renewal.
	RenewFraction float64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Outcome says what Ensure did.
type Outcome struct {
	Secret *corev1.Secret
	// Written is true when this call created or updated the Secret.
	Written bool
	// Reason the previous content was replaced (ReasonMissing on create).
	Reason Reason
	Detail string
	// Replaced is the data this write replaced (nil when it created the
	// Secret): the cert read right before the write, which may be another
	// writer's newer one than the caller had seen.
	Replaced map[string][]byte
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Ensure makes the Secret of spec hold a good serving cert: it keeps a good
// one untouched (restarts reuse it), creates the Secret when absent and
// replaces the cert when Check rejects it. trusted is the mesh CA bundle the
// cert must chain to.
func (s *Store) Ensure(ctx context.Context, spec Spec, trusted []byte) (Outcome, error) {
	return s.ensure(ctx, spec, trusted, nil, false)
}

// EnsureFrom is Ensure that also replaces a cert which does not chain to
// root: root rotation uses it to move serving certs onto the new root. A
// cert another replica already re-issued from root is kept.
func (s *Store) EnsureFrom(ctx context.Context, spec Spec, trusted []byte, root *x509.Certificate) (Outcome, error) {
	return s.ensure(ctx, spec, trusted, root, false)
}

// Renew replaces the stored cert with a new one from the issuer's current
// signing root, whatever its state (operators use it after switching the
// signing root of a provider that rotates outside fsm-webhooks). If another
// writer replaces the Secret concurrently, its cert is kept when good.
func (s *Store) Renew(ctx context.Context, spec Spec, trusted []byte) (Outcome, error) {
	return s.ensure(ctx, spec, trusted, nil, true)
}

func (s *Store) ensure(ctx context.Context, spec Spec, trusted []byte, root *x509.Certificate, force bool) (Outcome, error) {
	if err := spec.Validate(); err != nil {
		return Outcome{}, err
	}
	secrets := s.Client.CoreV1().Secrets(spec.Namespace)
	var lastErr error
	// A forced renewal stands until the cert it was asked to replace is
	// gone: a conflict from a metadata edit (a label, an annotation) leaves
	// that cert in place, and only another writer's new cert ends it.
	var forcedFrom []byte
	for attempt := 0; attempt < maxAttempts; attempt++ {
		cur, err := secrets.Get(ctx, spec.SecretName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur = nil
		case err != nil:
			return Outcome{}, fmt.Errorf("reading Secret %s/%s: %w", spec.Namespace, spec.SecretName, err)
		}
		var v Verdict
		if cur == nil {
			v = Verdict{Reason: ReasonMissing, Detail: "Secret does not exist"}
		} else {
			v = Check(spec, cur.Data, trusted, s.now(), s.RenewFraction)
			if force && attempt == 0 {
				forcedFrom = cur.Data[KeyCert]
			}
			if v.OK() && force && bytes.Equal(cur.Data[KeyCert], forcedFrom) {
				v.Reason, v.Detail = ReasonForced, "renewal requested"
			}
			if v.OK() && root != nil {
				if err := certs.ChainsTo(cur.Data[KeyCert], root, s.now()); err != nil {
					v.Reason, v.Detail = ReasonRootRotate, err.Error()
				}
			}
		}
		if v.OK() {
			return Outcome{Secret: cur}, nil
		}
		data, err := s.issue(ctx, spec)
		if err != nil {
			return Outcome{}, err
		}
		var written *corev1.Secret
		var replaced map[string][]byte
		if cur == nil {
			written, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name:      spec.SecretName,
					Namespace: spec.Namespace,
					Labels:    map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/component": "webhook-serving-cert"},
				},
				Type: corev1.SecretTypeOpaque,
				Data: data,
			}, metav1.CreateOptions{})
		} else {
			replaced = cur.Data
			next := cur.DeepCopy()
			if next.Data == nil {
				next.Data = map[string][]byte{}
			}
			for k, val := range data {
				next.Data[k] = val
			}
			// Update carries cur's resourceVersion: if another replica
			// wrote first we get a Conflict and re-evaluate its cert.
			written, err = secrets.Update(ctx, next, metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			s.Log.Info("wrote webhook serving cert", "secret", spec.Namespace+"/"+spec.SecretName,
				"reason", string(v.Reason), "detail", v.Detail, "provider", s.Issuer.Provider())
			return Outcome{Secret: written, Written: true, Reason: v.Reason, Detail: v.Detail, Replaced: replaced}, nil
		case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
			lastErr = err
			// Lost the race; the winner's cert is usually good: loop
			// and check it.
			continue
		default:
			return Outcome{}, fmt.Errorf("writing Secret %s/%s: %w", spec.Namespace, spec.SecretName, err)
		}
	}
	return Outcome{}, fmt.Errorf("serving cert Secret %s/%s: still contended after %d attempts: %w", spec.Namespace, spec.SecretName, maxAttempts, lastErr)
}

// issue asks the issuer for a cert and returns the Secret data: tls.crt,
// tls.key and, as ca.crt, the root(s) the cert chains to.
func (s *Store) issue(ctx context.Context, spec Spec) (map[string][]byte, error) {
	c, err := s.Issuer.Issue(ctx, spec.Request())
	if err != nil {
		return nil, fmt.Errorf("issuing serving cert %s for Secret %s/%s: %w", spec.CommonName(), spec.Namespace, spec.SecretName, err)
	}
	if c == nil || len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 {
		return nil, fmt.Errorf("issuing serving cert %s: %s issuer returned an empty certificate", spec.CommonName(), s.Issuer.Provider())
	}
	leafs, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("issuing serving cert %s: %s issuer returned an unparsable certificate: %w", spec.CommonName(), s.Issuer.Provider(), err)
	}
	// ca.crt holds only the issuing root: the trust anchor this cert needs.
	// Storing the whole bundle would keep a retired root trusted for as
	// long as this cert lives.
	ca, err := IssuingRoots(leafs, c.CABundle, s.now())
	if err != nil {
		return nil, fmt.Errorf("issuing serving cert %s: the %s issuer's CA bundle does not verify the issued cert: %w", spec.CommonName(), s.Issuer.Provider(), err)
	}
	return map[string][]byte{KeyCA: ca, KeyCert: c.CertPEM, KeyKey: c.KeyPEM}, nil
}

// ErrNoCert is returned by a Source with nothing loaded yet.
var ErrNoCert = errors.New("serving certificate not loaded yet")
