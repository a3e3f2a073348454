package tresor

import (
	"bytes"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// planStep is one rotation step as mutate runs it: the Secret read, its
// state, the time.
type planStep func(sec *corev1.Secret, st *State, now time.Time) (map[string][]byte, bool, error)

func addStep(next *certs.Authority) planStep {
	return func(sec *corev1.Secret, st *State, now time.Time) (map[string][]byte, bool, error) {
		return planAddNextRoot(sec, st, func() (*certs.Authority, error) { return next, nil }, now)
	}
}

var (
	activateStep planStep = planActivateNextRoot
	dropStep     planStep = planDropPreviousRoot
)

func caSecret(data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: DefaultSecretName, Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Data:       data,
	}
}

// runStep applies step to sec at now and returns the Secret it writes
// (sec itself when the step is a no-op).
func runStep(t *testing.T, sec *corev1.Secret, step planStep, now time.Time) *corev1.Secret {
	t.Helper()
	st, err := Inspect(sec, now)
	if err != nil {
		t.Fatal(err)
	}
	data, changed, err := step(sec, st, now)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		return sec
	}
	return caSecret(data)
}

// secretKeys is the sorted list of sec's data keys.
func secretKeys(sec *corev1.Secret) []string {
	var keys []string
	for k := range sec.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestRotationPlansWriteEachPhase walks one root rotation, then the start of
// the next, through the plans mutate writes, and checks each Secret as its
// readers see it: FSM's controller signs with private.key under the first
// certificate of ca.crt (and never reads the rotation keys), our replicas
// trust every root in ca.crt and resume from the rotation keys, and the
// rotation loop times its grace period from the phase's timestamp. A root
// the operator added to ca.crt stays trusted throughout.
func TestRotationPlansWriteEachPhase(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	old := mustRoot(t, certs.ECDSAP256, 24*time.Hour, t0)
	extra := mustRoot(t, certs.ECDSAP256, 24*time.Hour, t0.Add(-time.Hour))
	// A longer life than old's: expiration must follow the signing root.
	next := mustRoot(t, certs.ECDSAP256, 36*time.Hour, t0)
	third := mustRoot(t, certs.ECDSAP256, 48*time.Hour, t0.Add(3*time.Hour))
	data, err := newSecretData(old)
	if err != nil {
		t.Fatal(err)
	}
	data[KeyCABundle] = certs.EncodeCertsPEM(old.Cert, extra.Cert)
	sec := caSecret(data)

	added, activated, completed := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour)
	base := []string{KeyCABundle, KeyExpiration, KeyPrivateKey}
	for _, tc := range []struct {
		name string
		step planStep
		at   time.Time
		// signer is the root that must sign (first in ca.crt, key in
		// private.key); next and previous the recorded roots, nil when none.
		signer, next, previous *x509.Certificate
		trusted                []*x509.Certificate
		phase                  Phase
		keys                   []string
		started, act, done     time.Time
	}{{
		name: "phase 1 adds the next root beside the others", step: addStep(next), at: added,
		signer: old.Cert, next: next.Cert, trusted: []*x509.Certificate{old.Cert, extra.Cert, next.Cert}, phase: PhaseNextRootAdded,
		keys:    append(slices.Clone(base), KeyRotationNextCert, KeyRotationNextKey, KeyRotationPhase, KeyRotationStarted),
		started: added,
	}, {
		name: "phase 2 signs with the next root and keeps the old one trusted", step: activateStep, at: activated,
		signer: next.Cert, previous: old.Cert, trusted: []*x509.Certificate{old.Cert, extra.Cert, next.Cert}, phase: PhaseNextRootActive,
		keys:    append(slices.Clone(base), KeyRotationActivated, KeyRotationPhase, KeyRotationPreviousCert, KeyRotationStarted),
		started: added, act: activated,
	}, {
		name: "phase 3 drops only the old root", step: dropStep, at: completed,
		signer: next.Cert, trusted: []*x509.Certificate{extra.Cert, next.Cert}, phase: PhaseComplete,
		keys:    append(slices.Clone(base), KeyRotationActivated, KeyRotationCompleted, KeyRotationPhase, KeyRotationStarted),
		started: added, act: activated, done: completed,
	}, {
		name: "a new rotation after Complete forgets the last one's keys", step: addStep(third), at: completed.Add(time.Hour),
		signer: next.Cert, next: third.Cert, trusted: []*x509.Certificate{extra.Cert, next.Cert, third.Cert}, phase: PhaseNextRootAdded,
		keys:    append(slices.Clone(base), KeyRotationNextCert, KeyRotationNextKey, KeyRotationPhase, KeyRotationStarted),
		started: completed.Add(time.Hour),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			written := runStep(t, sec, tc.step, tc.at)
			if written == sec {
				t.Fatal("the step wrote nothing")
			}
			sec = written
			assertSigner(t, sec, tc.signer)
			if got, want := string(sec.Data[KeyExpiration]), tc.signer.NotAfter.UTC().Format(ExpirationLayout); got != want {
				t.Errorf("%s = %q, want the signing root's NotAfter %q", KeyExpiration, got, want)
			}
			if got := secretKeys(sec); !slices.Equal(got, tc.keys) {
				t.Errorf("keys %q, want %q", got, tc.keys)
			}
			inCA, err := certs.ParseCertsPEM(sec.Data[KeyCABundle])
			if err != nil {
				t.Fatal(err)
			}
			if len(inCA) != len(tc.trusted) {
				t.Errorf("%s holds %d certificates, want the %d trusted roots once each", KeyCABundle, len(inCA), len(tc.trusted))
			}
			st, err := Inspect(sec, tc.at)
			if err != nil {
				t.Fatalf("the Secret written does not inspect: %v", err)
			}
			r := st.Rotation
			if r.Phase != tc.phase || !r.Active.Equal(tc.signer) || !sameCert(r.Next, tc.next) || !sameCert(r.Previous, tc.previous) {
				t.Errorf("phase %q active %s next %v previous %v; want %q %s %v %v", r.Phase, r.Active.NotBefore, r.Next != nil, r.Previous != nil,
					tc.phase, tc.signer.NotBefore, tc.next != nil, tc.previous != nil)
			}
			if len(r.Trusted) != len(tc.trusted) {
				t.Errorf("%d roots trusted, want %d", len(r.Trusted), len(tc.trusted))
			}
			for _, c := range tc.trusted {
				if !st.Bundle.Contains(c) {
					t.Errorf("root %s (NotBefore %s) is not trusted", c.Subject.CommonName, c.NotBefore)
				}
			}
			if !r.Started.Equal(tc.started) || !r.Activated.Equal(tc.act) || !r.Completed.Equal(tc.done) {
				t.Errorf("started %s activated %s completed %s; want %s %s %s", r.Started, r.Activated, r.Completed, tc.started, tc.act, tc.done)
			}
		})
	}
}

func sameCert(a, b *x509.Certificate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// assertSigner: the first certificate of ca.crt is signer and private.key
// its key, as FSM's controller pairs them.
func assertSigner(t *testing.T, sec *corev1.Secret, signer *x509.Certificate) {
	t.Helper()
	inCA, err := certs.ParseCertsPEM(sec.Data[KeyCABundle])
	if err != nil {
		t.Fatal(err)
	}
	if !inCA[0].Equal(signer) {
		t.Errorf("the first certificate of %s is not the signing root (NotBefore %s, want %s)", KeyCABundle, inCA[0].NotBefore, signer.NotBefore)
	}
	key, err := certs.ParseKeyPEM(sec.Data[KeyPrivateKey])
	if err != nil {
		t.Fatal(err)
	}
	if !certs.KeyMatches(key, signer.PublicKey) {
		t.Errorf("%s is not the signing root's key", KeyPrivateKey)
	}
}

// TestRotationStepsOutOfOrder: each step in each phase writes, is a no-op
// (re-running a finished step, or a replica that lost the race), or is
// refused with what to do first.
func TestRotationStepsOutOfOrder(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	old := mustRoot(t, certs.ECDSAP256, 24*time.Hour, t0)
	next := mustRoot(t, certs.ECDSAP256, 24*time.Hour, t0)
	data, err := newSecretData(old)
	if err != nil {
		t.Fatal(err)
	}
	phases := map[Phase]*corev1.Secret{PhaseNone: caSecret(data)}
	phases[PhaseNextRootAdded] = runStep(t, phases[PhaseNone], addStep(next), t0)
	phases[PhaseNextRootActive] = runStep(t, phases[PhaseNextRootAdded], activateStep, t0)
	phases[PhaseComplete] = runStep(t, phases[PhaseNextRootActive], dropStep, t0)

	const (
		writes = "writes"
		noop   = "no-op"
	)
	steps := map[string]planStep{"add": addStep(mustRoot(t, certs.ECDSAP256, 24*time.Hour, t0)), "activate": activateStep, "drop": dropStep}
	for _, tc := range []struct {
		phase Phase
		step  string
		want  string // writes, no-op, or a substring of the error
	}{
		{PhaseNone, "add", writes},
		{PhaseNone, "activate", "no root rotation in progress: add the next root first"},
		{PhaseNone, "drop", "no root rotation in progress: nothing to drop"},
		{PhaseNextRootAdded, "add", noop},
		{PhaseNextRootAdded, "activate", writes},
		{PhaseNextRootAdded, "drop", "the next root is not active yet (phase NextRootAdded): activate it before dropping the previous root"},
		{PhaseNextRootActive, "add", noop},
		{PhaseNextRootActive, "activate", noop},
		{PhaseNextRootActive, "drop", writes},
		{PhaseComplete, "add", writes},
		{PhaseComplete, "activate", noop},
		{PhaseComplete, "drop", noop},
	} {
		t.Run(phaseName(tc.phase)+"/"+tc.step, func(t *testing.T) {
			sec := phases[tc.phase]
			before := sec.DeepCopy()
			st, err := Inspect(sec, t0)
			if err != nil {
				t.Fatal(err)
			}
			data, changed, err := steps[tc.step](sec, st, t0)
			got := noop
			switch {
			case err != nil:
				got = err.Error()
			case changed:
				got = writes
			}
			if tc.want == writes || tc.want == noop {
				if got != tc.want {
					t.Errorf("%s in phase %q: %s, want %s", tc.step, phaseName(tc.phase), got, tc.want)
				}
			} else if !strings.Contains(got, tc.want) {
				t.Errorf("%s in phase %q: %s, want the error %q", tc.step, phaseName(tc.phase), got, tc.want)
			}
			if got != writes && data != nil {
				t.Errorf("%s in phase %q returned data to write with %s", tc.step, phaseName(tc.phase), got)
			}
			for k, v := range before.Data {
				if !bytes.Equal(sec.Data[k], v) {
					t.Errorf("%s in phase %q changed the Secret read (%s)", tc.step, phaseName(tc.phase), k)
				}
			}
		})
	}
}

// phaseName spells p in test names.
func phaseName(p Phase) string {
	if p == PhaseNone {
		return "None"
	}
	return string(p)
}

// TestNewSecretData: a new CA Secret holds FSM's two keys and OSM's
// expiration, in their layouts.
func TestNewSecretData(t *testing.T) {
	root := mustRoot(t, certs.ECDSAP256, time.Hour, time.Now())
	data, err := newSecretData(root)
	if err != nil {
		t.Fatal(err)
	}
	sec := caSecret(data)
	if got, want := secretKeys(sec), []string{KeyCABundle, KeyExpiration, KeyPrivateKey}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	assertSigner(t, sec, root.Cert)
	if got, want := string(data[KeyExpiration]), root.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05.000Z"); got != want {
		t.Errorf("%s = %q, want %q", KeyExpiration, got, want)
	}
}
