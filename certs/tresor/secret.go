package tresor

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// Keys of the CA Secret. ca.crt and private.key are FSM's (v1.5.1 writes
// only those, pkg/certificate/castorage/k8s); expiration is the key OSM's
// documentation shows for this Secret, which FSM neither writes nor reads;
// the rotation.* keys are ours and record a root rotation in progress so
// any replica or a re-run of `certs rotate-root` can resume it.
const (
	// KeyCABundle holds every root currently trusted (old and new during a
	// rotation).
	KeyCABundle = "ca.crt"
	// KeyPrivateKey is the key of the active signing root.
	KeyPrivateKey = "private.key"
	// KeyExpiration is the active root's NotAfter (ExpirationLayout).
	KeyExpiration = "expiration"

	// KeyRotationPhase is the Phase of a rotation; absent when none ever ran.
	KeyRotationPhase = "rotation.phase"
	// KeyRotationNextCert and KeyRotationNextKey hold the new root while it
	// is trusted but not yet signing (PhaseNextRootAdded).
	KeyRotationNextCert = "rotation.next.crt"
	KeyRotationNextKey  = "rotation.next.key"
	// KeyRotationPreviousCert is the old root while it is still trusted but
	// no longer signing (PhaseNextRootActive).
	KeyRotationPreviousCert = "rotation.previous.crt"
	// Timestamps (RFC 3339) of each phase.
	KeyRotationStarted   = "rotation.started"
	KeyRotationActivated = "rotation.activated"
	KeyRotationCompleted = "rotation.completed"

	// ExpirationLayout is FSM's layout for KeyExpiration.
	ExpirationLayout = "2006-01-02T15:04:05.000Z"

	// LabelManagedBy marks Secrets this program created; a CA Secret without
	// it is someone else's (bring-your-own root) and is never written.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value on our Secrets.
	ManagedByValue = "fsm-webhooks"

	// DefaultSecretName is FSM's --ca-bundle-secret-name default.
	DefaultSecretName = fsmnames.CABundleSecretName
)

var rotationKeys = []string{
	KeyRotationPhase, KeyRotationNextCert, KeyRotationNextKey, KeyRotationPreviousCert,
	KeyRotationStarted, KeyRotationActivated, KeyRotationCompleted,
}

// Phase is the state of a root rotation.
type Phase string

// Rotation phases, in order. A Secret without rotation keys is PhaseNone.
const (
	PhaseNone Phase = ""
	// PhaseNextRootAdded: the new root is in ca.crt beside the old one;
	// leaves are still signed by the old root.
	PhaseNextRootAdded Phase = "NextRootAdded"
	// PhaseNextRootActive: leaves are signed by the new root; the old one is
	// still trusted.
	PhaseNextRootActive Phase = "NextRootActive"
	// PhaseComplete: the old root is gone from ca.crt.
	PhaseComplete Phase = "Complete"
)

// RotationStatus describes the CA Secret's roots and rotation.
type RotationStatus struct {
	Phase Phase
	// Managed is false for a bring-your-own root, which we never rotate.
	Managed bool
	// Active signs new leaves.
	Active *x509.Certificate
	// Next is the new root while PhaseNextRootAdded.
	Next *x509.Certificate
	// Previous is the old root while PhaseNextRootActive.
	Previous *x509.Certificate
	// Trusted is every unexpired root in ca.crt.
	Trusted                       []*x509.Certificate
	Started, Activated, Completed time.Time
}

// State is a parsed, valid CA Secret.
type State struct {
	Namespace, Name string
	ResourceVersion string
	Authority       *certs.Authority
	Bundle          *certs.Bundle
	// BundlePEM is Bundle.PEM(), computed once.
	BundlePEM []byte
	Rotation  RotationStatus

	nextKeyPEM []byte
	// applied is when the Issuer took this version up (zero outside it).
	applied time.Time
	// data and labels are the Secret's, for re-creating it (Issuer.recreate).
	data   map[string][]byte
	labels map[string]string
}

// InvalidSecretError says why a CA Secret cannot be used. Such a Secret is
// never overwritten: a human decides what to do with it.
type InvalidSecretError struct {
	Namespace, Name string
	Problem         string
	// Err is the parse or check error behind Problem, if one is (its text
	// is in Problem): errors.Is and errors.As reach it.
	Err error
}

func (e *InvalidSecretError) Unwrap() error { return e.Err }

func (e *InvalidSecretError) Error() string {
	return fmt.Sprintf("CA Secret %s/%s is invalid: %s; it is left untouched: fix it, or delete it (a running server creates it again with the root it signs with, else the next to start creates a new root)",
		e.Namespace, e.Name, e.Problem)
}

// Inspect parses and checks a CA Secret at now: ca.crt parses, private.key
// parses and is the key of a CA in ca.crt that may sign and has not expired,
// and any rotation keys are consistent with their phase. Errors are
// *InvalidSecretError naming the Secret and the problem. `certs status` uses
// it to show the Secret's health.
func Inspect(s *corev1.Secret, now time.Time) (*State, error) {
	bad := func(format string, args ...any) (*State, error) {
		problem := fmt.Errorf(format, args...)
		return nil, &InvalidSecretError{Namespace: s.Namespace, Name: s.Name, Problem: problem.Error(), Err: errors.Unwrap(problem)}
	}
	caPEM, ok := s.Data[KeyCABundle]
	if !ok || len(bytes.TrimSpace(caPEM)) == 0 {
		return bad("key %q is missing or empty", KeyCABundle)
	}
	roots, err := certs.ParseCertsPEM(caPEM)
	if err != nil {
		return bad("%s: %w", KeyCABundle, err)
	}
	keyPEM, ok := s.Data[KeyPrivateKey]
	if !ok || len(bytes.TrimSpace(keyPEM)) == 0 {
		return bad("key %q is missing or empty", KeyPrivateKey)
	}
	key, err := certs.ParseKeyPEM(keyPEM)
	if err != nil {
		return bad("%s: %w", KeyPrivateKey, err)
	}
	var active *x509.Certificate
	for _, r := range roots {
		if certs.KeyMatches(key, r.PublicKey) {
			active = r
			break
		}
	}
	if active == nil {
		return bad("%s does not match any of the %d certificate(s) in %s", KeyPrivateKey, len(roots), KeyCABundle)
	}
	authority, err := certs.NewAuthority(active, key)
	if err != nil {
		return bad("%w", err)
	}
	if now.After(active.NotAfter) {
		return bad("the signing root %q (serial %x) expired at %s", active.Subject.CommonName, active.SerialNumber,
			active.NotAfter.UTC().Format(time.RFC3339))
	}
	bundle := certs.NewBundle(now, roots...)
	st := &State{
		data:            maps.Clone(s.Data),
		labels:          maps.Clone(s.Labels),
		Namespace:       s.Namespace,
		Name:            s.Name,
		ResourceVersion: s.ResourceVersion,
		Authority:       authority,
		Bundle:          bundle,
		BundlePEM:       bundle.PEM(),
		Rotation: RotationStatus{
			Managed: s.Labels[LabelManagedBy] == ManagedByValue,
			Active:  active,
			Trusted: bundle.Certificates(),
		},
	}
	if err := inspectRotation(s, st, bundle); err != nil {
		return bad("%w", err)
	}
	return st, nil
}

func inspectRotation(s *corev1.Secret, st *State, bundle *certs.Bundle) error {
	r := &st.Rotation
	r.Phase = Phase(s.Data[KeyRotationPhase])
	for key, dst := range map[string]*time.Time{
		KeyRotationStarted: &r.Started, KeyRotationActivated: &r.Activated, KeyRotationCompleted: &r.Completed,
	} {
		v, ok := s.Data[key]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339, string(v))
		if err != nil {
			return fmt.Errorf("%s: %s is not an RFC 3339 time", key, shownValue(v))
		}
		*dst = t
	}
	switch r.Phase {
	case PhaseNone, PhaseComplete:
		return nil
	case PhaseNextRootAdded:
		next, err := onlyCert(s, KeyRotationNextCert)
		if err != nil {
			return err
		}
		keyPEM := s.Data[KeyRotationNextKey]
		key, err := certs.ParseKeyPEM(keyPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", KeyRotationNextKey, err)
		}
		if _, err := certs.NewAuthority(next, key); err != nil {
			return fmt.Errorf("%s/%s: %w", KeyRotationNextCert, KeyRotationNextKey, err)
		}
		if !bundle.Contains(next) {
			return fmt.Errorf("phase %s but %s is not in %s", r.Phase, KeyRotationNextCert, KeyCABundle)
		}
		r.Next = next
		st.nextKeyPEM = keyPEM
		return nil
	case PhaseNextRootActive:
		prev, err := onlyCert(s, KeyRotationPreviousCert)
		if err != nil {
			return err
		}
		r.Previous = prev
		return nil
	default:
		return fmt.Errorf("%s: %s is not a phase (want one of %s, %s, %s)", KeyRotationPhase, shownValue(s.Data[KeyRotationPhase]),
			PhaseNextRootAdded, PhaseNextRootActive, PhaseComplete)
	}
}

// maxShownValue is the longest value of the CA Secret a message quotes: a
// phase or an RFC 3339 time (35 bytes at most) fits, a key does not.
const maxShownValue = 40

// shownValue is how a message names v, a value of the CA Secret read where
// a short text (the phase, a time) belongs: quoted when it is such a text,
// else by its size only. This Secret holds the root's key, and its
// messages reach logs, serve's exit and the CLI's output: a key written
// under the wrong name must not be printed with them.
func shownValue(v []byte) string {
	if len(v) <= maxShownValue && utf8.Valid(v) && !bytes.ContainsFunc(v, unicode.IsControl) {
		return strconv.Quote(string(v))
	}
	return fmt.Sprintf("a value of %d bytes (not shown: this Secret holds the root key)", len(v))
}

func onlyCert(s *corev1.Secret, key string) (*x509.Certificate, error) {
	cs, err := certs.ParseCertsPEM(s.Data[key])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("%s: want one certificate, found %d", key, len(cs))
	}
	return cs[0], nil
}

// newSecretData is the data of a freshly created CA Secret.
func newSecretData(root *certs.Authority) (map[string][]byte, error) {
	keyPEM, err := certs.EncodeKeyPEM(root.Key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyCABundle:   certs.EncodeCertsPEM(root.Cert),
		KeyPrivateKey: keyPEM,
		KeyExpiration: []byte(root.Cert.NotAfter.UTC().Format(ExpirationLayout)),
	}, nil
}

// Pure rotation steps: each returns the Secret's new data, or changed=false
// when the step is already done (re-running is a no-op).

func planAddNextRoot(s *corev1.Secret, st *State, next func() (*certs.Authority, error), now time.Time) (map[string][]byte, bool, error) {
	switch st.Rotation.Phase {
	case PhaseNextRootAdded, PhaseNextRootActive:
		return nil, false, nil
	}
	n, err := next()
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := certs.EncodeKeyPEM(n.Key)
	if err != nil {
		return nil, false, err
	}
	data := withoutRotation(s.Data)
	data[KeyCABundle] = signerFirst(st.Rotation.Active, st.Bundle.Merge(now, certs.NewBundle(now, n.Cert)))
	data[KeyRotationPhase] = []byte(PhaseNextRootAdded)
	data[KeyRotationNextCert] = certs.EncodeCertsPEM(n.Cert)
	data[KeyRotationNextKey] = keyPEM
	data[KeyRotationStarted] = []byte(now.UTC().Format(time.RFC3339))
	return data, true, nil
}

func planActivateNextRoot(s *corev1.Secret, st *State, now time.Time) (map[string][]byte, bool, error) {
	switch st.Rotation.Phase {
	case PhaseNextRootActive, PhaseComplete:
		return nil, false, nil
	case PhaseNone:
		return nil, false, fmt.Errorf("no root rotation in progress: add the next root first")
	}
	data := maps.Clone(s.Data)
	data[KeyCABundle] = signerFirst(st.Rotation.Next, st.Bundle)
	data[KeyPrivateKey] = st.nextKeyPEM
	data[KeyExpiration] = []byte(st.Rotation.Next.NotAfter.UTC().Format(ExpirationLayout))
	data[KeyRotationPhase] = []byte(PhaseNextRootActive)
	data[KeyRotationPreviousCert] = certs.EncodeCertsPEM(st.Rotation.Active)
	data[KeyRotationActivated] = []byte(now.UTC().Format(time.RFC3339))
	delete(data, KeyRotationNextCert)
	delete(data, KeyRotationNextKey)
	return data, true, nil
}

func planDropPreviousRoot(s *corev1.Secret, st *State, now time.Time) (map[string][]byte, bool, error) {
	switch st.Rotation.Phase {
	case PhaseComplete:
		return nil, false, nil
	case PhaseNone:
		return nil, false, fmt.Errorf("no root rotation in progress: nothing to drop")
	case PhaseNextRootAdded:
		return nil, false, fmt.Errorf("the next root is not active yet (phase %s): activate it before dropping the previous root", PhaseNextRootAdded)
	}
	var keep []*x509.Certificate
	for _, c := range st.Bundle.Certificates() {
		if !bytes.Equal(c.Raw, st.Rotation.Previous.Raw) {
			keep = append(keep, c)
		}
	}
	data := maps.Clone(s.Data)
	data[KeyCABundle] = signerFirst(st.Rotation.Active, certs.NewBundle(now, keep...))
	data[KeyRotationPhase] = []byte(PhaseComplete)
	data[KeyRotationCompleted] = []byte(now.UTC().Format(time.RFC3339))
	delete(data, KeyRotationPreviousCert)
	return data, true, nil
}

// signerFirst is ca.crt's content: signer (the root of private.key) first,
// then the rest of b. FSM's controller, which keeps running beside us after
// a switch, signs with private.key under the first certificate of ca.crt
// (tresor's IssueCertificate decodes the first PEM block): with the roots
// in age order, a restart in phase NextRootActive paired the old root's
// certificate with the new key, and every issuance failed.
func signerFirst(signer *x509.Certificate, b *certs.Bundle) []byte {
	out := []*x509.Certificate{signer}
	for _, c := range b.Certificates() {
		if !bytes.Equal(c.Raw, signer.Raw) {
			out = append(out, c)
		}
	}
	return certs.EncodeCertsPEM(out...)
}

func withoutRotation(in map[string][]byte) map[string][]byte {
	out := maps.Clone(in)
	if out == nil {
		out = map[string][]byte{}
	}
	for _, k := range rotationKeys {
		delete(out, k)
	}
	return out
}
