package rootrotation

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// phaser is a CA that moves through the phases as a provider records them
// (tresor's fsm-ca-bundle Secret): each step leads to the next phase, and
// the step taken in the phase it leads to is a no-op.
type phaser struct {
	mu    sync.Mutex
	st    Status
	next  *x509.Certificate
	steps []string
	at    map[string]time.Time
}

func newPhaser(phase Phase, current, next *x509.Certificate) *phaser {
	p := &phaser{next: next, at: map[string]time.Time{}}
	p.st = Status{Phase: phase, Since: time.Now(), Current: current}
	switch phase {
	case PhaseNextRootAdded:
		p.st.Next = next
	case PhaseNextRootActive:
		p.st.Current, p.st.Previous = next, current
	}
	return p
}

func (p *phaser) step(name string, from Phase, to func(*Status)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = append(p.steps, name)
	p.at[name] = time.Now()
	if p.st.Phase == from || (from == PhaseIdle && p.st.Phase == PhaseComplete) {
		to(&p.st)
		p.st.Since = time.Now()
	}
}

func (p *phaser) AddNextRoot(context.Context) error {
	p.step("add", PhaseIdle, func(s *Status) { s.Phase, s.Next = PhaseNextRootAdded, p.next })
	return nil
}

func (p *phaser) ActivateNextRoot(context.Context) error {
	p.step("activate", PhaseNextRootAdded, func(s *Status) {
		s.Phase, s.Previous, s.Current, s.Next = PhaseNextRootActive, s.Current, s.Next, nil
	})
	return nil
}

func (p *phaser) DropPreviousRoot(context.Context) error {
	p.step("drop", PhaseNextRootActive, func(s *Status) { s.Phase, s.Previous = PhaseComplete, nil })
	return nil
}

func (p *phaser) RotationStatus(context.Context) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st, nil
}

func (p *phaser) taken() ([]string, map[string]time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.steps), p.at
}

func testRoot(serial int64, validFor time.Duration) *x509.Certificate {
	return &x509.Certificate{Raw: big.NewInt(serial).Bytes(), SerialNumber: big.NewInt(serial), NotAfter: time.Now().Add(validFor)}
}

// TestRotationWalksThePhases: a rotation adds the next root, activates it
// only once every caBundle trusts that root (and Settle has passed), then
// drops the previous root only after the grace period and once nothing
// depends on it; a resumed one takes the steps left from the recorded
// phase, and OnPhase sees each phase reached.
func TestRotationWalksThePhases(t *testing.T) {
	const grace, settle = 150 * time.Millisecond, 50 * time.Millisecond
	for _, tc := range []struct {
		name  string
		phase Phase
		start bool
		want  []string
		seen  []Phase
	}{
		{"rotate from idle", PhaseIdle, true, []string{"add", "activate", "drop"}, []Phase{PhaseNextRootAdded, PhaseNextRootActive, PhaseComplete}},
		{"rotate after a finished one", PhaseComplete, true, []string{"add", "activate", "drop"}, []Phase{PhaseNextRootAdded, PhaseNextRootActive, PhaseComplete}},
		{"resume with the next root added", PhaseNextRootAdded, false, []string{"activate", "drop"}, []Phase{PhaseNextRootActive, PhaseComplete}},
		{"resume with the next root active", PhaseNextRootActive, false, []string{"drop"}, []Phase{PhaseComplete}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, next := testRoot(1, time.Hour), testRoot(2, 10*time.Hour)
			ca := newPhaser(tc.phase, old, next)
			var trustedAsked, dependentsAsked []*x509.Certificate
			var trustedAt time.Time
			notYet := 2
			var seen []Phase
			err := run(context.Background(), Options{
				CA: ca, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
				Trusted: func(_ context.Context, root *x509.Certificate) error {
					trustedAsked = append(trustedAsked, root)
					if notYet--; notYet >= 0 {
						return errors.New("the validator's caBundle lacks the next root")
					}
					trustedAt = time.Now()
					return nil
				},
				Dependents: func(_ context.Context, root *x509.Certificate) error {
					dependentsAsked = append(dependentsAsked, root)
					return nil
				},
				Grace: grace, Settle: settle, PollInterval: time.Millisecond,
				OnPhase: func(st Status) { seen = append(seen, st.Phase) },
			}, tc.start)
			if err != nil {
				t.Fatal(err)
			}
			steps, at := ca.taken()
			if !slices.Equal(steps, tc.want) {
				t.Fatalf("steps %v, want %v", steps, tc.want)
			}
			if !slices.Equal(seen, tc.seen) {
				t.Errorf("OnPhase saw %v, want %v", seen, tc.seen)
			}
			if slices.Contains(steps, "activate") {
				if len(trustedAsked) != 3 || slices.ContainsFunc(trustedAsked, func(c *x509.Certificate) bool { return c != next }) {
					t.Errorf("Trusted asked about %d roots %v, want 3 times about the next root", len(trustedAsked), trustedAsked)
				}
				if d := at["activate"].Sub(trustedAt); d < settle {
					t.Errorf("activated %s after every caBundle trusted the next root, want Settle (%s) first", d, settle)
				}
			} else if len(trustedAsked) != 0 {
				t.Errorf("Trusted asked %d times in phase %s", len(trustedAsked), tc.phase)
			}
			if len(dependentsAsked) != 1 || dependentsAsked[0] != old {
				t.Errorf("Dependents asked about %v, want once about the previous root", dependentsAsked)
			}
			if activated, ok := at["activate"]; ok {
				if d := at["drop"].Sub(activated); d < grace {
					t.Errorf("dropped %s after activating, want the grace period (%s) first", d, grace)
				}
			}
		})
	}
}

// TestGraceInterrupted: a process stopping during the grace period drops
// nothing and says the rotation resumes on the next start.
func TestGraceInterrupted(t *testing.T) {
	ca := newPhaser(PhaseNextRootActive, testRoot(1, time.Hour), testRoot(2, 10*time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := Resume(ctx, Options{CA: ca, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
		Trusted: func(context.Context, *x509.Certificate) error { return nil }, Grace: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "interrupted during the grace period") {
		t.Errorf("error %v, want the grace period interrupted", err)
	}
	if steps, _ := ca.taken(); len(steps) != 0 {
		t.Errorf("steps %v taken during the grace period", steps)
	}
}

// TestAutoRotatesOnlyNearExpiry: Auto starts a rotation when the signing
// root has less than before left, resumes one in progress whatever the
// root's expiry, and leaves a root with more left alone.
func TestAutoRotatesOnlyNearExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		phase  Phase
		left   time.Duration
		rotate bool
	}{
		{"root nears expiry", PhaseIdle, time.Hour, true},
		{"root nears expiry after a finished rotation", PhaseComplete, time.Hour, true},
		{"root far from expiry", PhaseIdle, 3 * time.Hour, false},
		{"rotation in progress, root far from expiry", PhaseNextRootAdded, 3 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newPhaser(tc.phase, testRoot(1, tc.left), testRoot(2, 10*time.Hour))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- Auto(ctx, Options{CA: ca, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
					Trusted: func(context.Context, *x509.Certificate) error { return nil },
					Grace:   time.Millisecond, Settle: time.Millisecond, PollInterval: time.Millisecond,
				}, 2*time.Hour, time.Hour)
			}()
			// A rotation ends with the drop; no rotation is judged after
			// Auto's first check has had half a second.
			wait := 20 * time.Second
			if !tc.rotate {
				wait = 500 * time.Millisecond
			}
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if steps, _ := ca.taken(); slices.Contains(steps, "drop") {
					break
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			steps, _ := ca.taken()
			if rotated := slices.Contains(steps, "drop"); rotated != tc.rotate {
				t.Errorf("steps %v: rotated %v, want %v", steps, rotated, tc.rotate)
			}
		})
	}
}

// finishedElsewhere is a CA on which another replica runs the whole
// rotation the moment this one adds the next root.
type finishedElsewhere struct{ *phaser }

func (f finishedElsewhere) AddNextRoot(ctx context.Context) error {
	_ = f.phaser.AddNextRoot(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = Status{Phase: PhaseComplete, Since: time.Now(), Current: f.next}
	return nil
}

// TestRotateStartsOneRotation: Rotate starts at most one rotation: finding
// the phase complete again after adding the next root (another replica
// finished it meanwhile) ends the run instead of rotating once more.
func TestRotateStartsOneRotation(t *testing.T) {
	ca := finishedElsewhere{newPhaser(PhaseIdle, testRoot(1, time.Hour), testRoot(2, 10*time.Hour))}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Rotate(ctx, Options{CA: ca, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
		Trusted: func(context.Context, *x509.Certificate) error { return nil }})
	if steps, _ := ca.taken(); err != nil || !slices.Equal(steps, []string{"add"}) {
		t.Errorf("err %v, steps %v; want one add", err, steps)
	}
}

// TestOptionsDefaults: a duration left zero gets its documented default
// (a zero Settle would activate the next root before the apiserver has
// seen the caBundle holding it).
func TestOptionsDefaults(t *testing.T) {
	o, err := Options{CA: &recorder{}, Issuer: nopIssuer{}, Client: &kubernetesStub{},
		Trusted: func(context.Context, *x509.Certificate) error { return nil }}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][2]time.Duration{
		"Grace":                  {o.Grace, 24 * time.Hour},
		"PollInterval":           {o.PollInterval, 2 * time.Second},
		"DependentsPollInterval": {o.DependentsPollInterval, 30 * time.Second},
		"Settle":                 {o.Settle, 3 * time.Second},
	} {
		if got[0] != got[1] {
			t.Errorf("%s defaults to %s, want %s", name, got[0], got[1])
		}
	}
}
