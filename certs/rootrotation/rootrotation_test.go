package rootrotation

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

func TestPhaseInProgress(t *testing.T) {
	for p, want := range map[Phase]bool{PhaseIdle: false, PhaseComplete: false, PhaseNextRootAdded: true, PhaseNextRootActive: true} {
		if p.InProgress() != want {
			t.Errorf("%q.InProgress() = %v", p, !want)
		}
	}
}

// recorder is a CA whose recorded phase the test sets; it records the
// steps the driver takes.
type recorder struct {
	status Status
	steps  []string
}

func (r *recorder) AddNextRoot(context.Context) error {
	r.steps = append(r.steps, "add")
	return context.Canceled
}
func (r *recorder) ActivateNextRoot(context.Context) error {
	r.steps = append(r.steps, "activate")
	return nil
}
func (r *recorder) DropPreviousRoot(context.Context) error {
	r.steps = append(r.steps, "drop")
	return nil
}
func (r *recorder) RotationStatus(context.Context) (Status, error) {
	return r.status, nil
}

type nopIssuer struct{}

func (nopIssuer) Issue(context.Context, certs.Request) (*certs.Certificate, error) { return nil, nil }
func (nopIssuer) CABundle(context.Context) ([]byte, error)                         { return nil, nil }
func (nopIssuer) Provider() string                                                 { return "nop" }

func TestDriverDecisions(t *testing.T) {
	var client kubernetes.Interface = &kubernetesStub{}
	trusted := func(context.Context, *x509Cert) error { return nil }
	cases := []struct {
		name    string
		phase   Phase
		start   bool
		want    string
		wantErr string
	}{
		{"resume idle does nothing", PhaseIdle, false, "", ""},
		{"resume complete does nothing", PhaseComplete, false, "", ""},
		{"rotate from complete starts", PhaseComplete, true, "add", "adding the next root"},
		{"rotate from idle starts", PhaseIdle, true, "add", "adding the next root"},
		{"added without next root", PhaseNextRootAdded, false, "", "without a next root"},
		{"active without current root", PhaseNextRootActive, false, "", "without a current root"},
		{"unknown phase", Phase("Weird"), false, "", `unknown recorded phase "Weird"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := &recorder{status: Status{Phase: c.phase}}
			err := run(context.Background(), Options{CA: ca, Issuer: nopIssuer{}, Client: client, Trusted: trusted, Specs: []servingcert.Spec{}}, c.start)
			if got := strings.Join(ca.steps, ","); got != c.want {
				t.Errorf("steps %q, want %q", got, c.want)
			}
			if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
		})
	}
}

// TestClockCheckStopsEveryStep: a run whose ClockCheck fails (serve on a
// node whose clock runs ahead of the apiserver's) takes no step in any
// phase, and says why; one that passes goes on as without it.
func TestClockCheckStopsEveryStep(t *testing.T) {
	var client kubernetes.Interface = &kubernetesStub{}
	trusted := func(context.Context, *x509Cert) error { return nil }
	ahead := errors.New("this node's clock is 3m0s ahead of the apiserver's")
	cases := []struct {
		name    string
		phase   Phase
		start   bool
		check   error
		want    string
		wantErr string
	}{
		{"rotate from idle, clock ahead", PhaseIdle, true, ahead, "", "3m0s ahead"},
		{"resume added, clock ahead", PhaseNextRootAdded, false, ahead, "", "3m0s ahead"},
		{"resume active, clock ahead", PhaseNextRootActive, false, ahead, "", "3m0s ahead"},
		{"rotate from idle, clock in step", PhaseIdle, true, nil, "add", "adding the next root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := &recorder{status: Status{Phase: c.phase}}
			check := func(context.Context) error { return c.check }
			err := run(context.Background(), Options{CA: ca, Issuer: nopIssuer{}, Client: client, Trusted: trusted, Specs: []servingcert.Spec{}, ClockCheck: check}, c.start)
			if got := strings.Join(ca.steps, ","); got != c.want {
				t.Errorf("steps %q, want %q", got, c.want)
			}
			if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := (Options{}).withDefaults(); err == nil {
		t.Error("empty options accepted")
	}
	o := Options{CA: &recorder{}, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Trusted: func(context.Context, *x509Cert) error { return nil }, Grace: -time.Second}
	if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), "Grace -1s") {
		t.Errorf("negative grace: %v", err)
	}
	o.Grace = 0
	o.Specs = []servingcert.Spec{{SecretName: "Bad"}}
	if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), "SecretName") {
		t.Errorf("bad spec: %v", err)
	}
	if err := Auto(context.Background(), o, 0, time.Second); err == nil {
		t.Error("Auto accepted a zero threshold")
	}
}

type x509Cert = x509.Certificate

// kubernetesStub satisfies kubernetes.Interface for decisions that never
// reach the API; any call would panic on the nil embedded interface and
// fail the test.
type kubernetesStub struct{ kubernetes.Interface }

// TestDependentsNotPolledAtPollInterval: Dependents may read every
// bootstrap Secret of the cluster with its keys (injector.RetiringRootCheck;
// 50,000 meshed pods are 100 lists of 500), and a Secret left on the old
// root (one the trust controller leaves as it is) keeps the drop waiting
// until its pod goes. Asked every PollInterval (2 s, for the caBundles'
// cheap check), every replica read them all every 2 s meanwhile; it is asked
// every DependentsPollInterval (default 30 s, the trust controller's pass).
func TestDependentsNotPolledAtPollInterval(t *testing.T) {
	active := Status{Phase: PhaseNextRootActive, Since: time.Now().Add(-time.Hour),
		Current: &x509.Certificate{Raw: []byte("current")}, Previous: &x509.Certificate{Raw: []byte("previous")}}
	var asked atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Resume(ctx, Options{CA: &recorder{status: active}, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
		Trusted: func(context.Context, *x509Cert) error { return nil }, Grace: time.Millisecond, PollInterval: time.Millisecond,
		Dependents: func(context.Context, *x509.Certificate) error {
			asked.Add(1)
			return errors.New("1 bootstrap Secret left")
		}})
	if err == nil {
		t.Fatal("Resume dropped the root while Dependents reported one left")
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("Dependents asked %d times in 300 ms with PollInterval 1ms; want once (every %s)", n, DefaultDependentsPollInterval)
	}
}

// TestDropWaitsForDependents: the previous root is dropped only once
// Dependents finds nothing it signed; interrupted while waiting, nothing is
// dropped and the error says what it waited for.
func TestDropWaitsForDependents(t *testing.T) {
	root := &x509.Certificate{Raw: []byte("current")}
	previous := &x509.Certificate{Raw: []byte("previous")}
	active := Status{Phase: PhaseNextRootActive, Since: time.Now().Add(-time.Hour), Current: root, Previous: previous}
	opts := func(ca CA, dependents func(context.Context, *x509.Certificate) error) Options {
		return Options{CA: ca, Issuer: nopIssuer{}, Client: &kubernetesStub{}, Specs: []servingcert.Spec{},
			Trusted: func(context.Context, *x509Cert) error { return nil }, Grace: time.Millisecond, PollInterval: time.Millisecond,
			DependentsPollInterval: time.Millisecond, Dependents: dependents}
	}

	ca := &recorder{status: active}
	var asked []*x509.Certificate
	pending := 3
	err := Resume(context.Background(), opts(ca, func(_ context.Context, r *x509.Certificate) error {
		asked = append(asked, r)
		if len(ca.steps) != 0 {
			t.Errorf("steps %v taken while certificates of the previous root remain", ca.steps)
		}
		if pending--; pending >= 0 {
			return errors.New("2 bootstrap Secrets still hold a certificate signed by it")
		}
		return nil
	}))
	if err != nil || strings.Join(ca.steps, ",") != "drop" {
		t.Fatalf("err %v, steps %v; want the drop once nothing depends on the previous root", err, ca.steps)
	}
	if len(asked) != 4 || asked[0] != previous {
		t.Errorf("Dependents asked %d times about %v, want 4 times about the previous root", len(asked), asked)
	}

	ca = &recorder{status: active}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = Resume(ctx, opts(ca, func(context.Context, *x509.Certificate) error { return errors.New("1 bootstrap Secret left") }))
	if err == nil || !strings.Contains(err.Error(), "waiting for certificates of the previous root to be re-issued") || !strings.Contains(err.Error(), "1 bootstrap Secret left") {
		t.Errorf("interrupted wait: %v", err)
	}
	if len(ca.steps) != 0 {
		t.Errorf("steps %v taken by an interrupted wait", ca.steps)
	}
}

// TestWaitTrustedSaysWhatItWaitsFor: a rotation held because a caBundle does
// not trust the next root says so once, with the reason, not once per poll.
func TestWaitTrustedSaysWhatItWaitsFor(t *testing.T) {
	var lines []string
	failures := 3
	opts := Options{
		Log: funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{}),
		Trusted: func(context.Context, *x509Cert) error {
			if failures--; failures >= 0 {
				return errors.New("MutatingWebhookConfiguration fsm-webhook-fsm: caBundle lacks the next root")
			}
			return nil
		},
		PollInterval: time.Millisecond,
	}
	if err := waitTrusted(context.Background(), opts, &x509.Certificate{}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "waiting for every caBundle to trust the next root") ||
		!strings.Contains(lines[0], "fsm-webhook-fsm: caBundle lacks the next root") {
		t.Errorf("log lines %q, want one naming the wait and its reason", lines)
	}
}

// TestWaitReport: a wait is logged when it starts, when its reason changes,
// and once a minute while the reason stays the same (a rotation held for
// hours was logged once and looked hung), never once per poll.
func TestWaitReport(t *testing.T) {
	start := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	var w waitReport
	for _, step := range []struct {
		at     time.Duration
		reason string
		logged bool
		waited time.Duration
	}{
		{0, "no replica serves the injector", true, 0},
		{2 * time.Second, "no replica serves the injector", false, 0},
		{59 * time.Second, "no replica serves the injector", false, 0},
		{61 * time.Second, "no replica serves the injector", true, 61 * time.Second},
		{63 * time.Second, "the validator's caBundle lacks the next root", true, 63 * time.Second},
		{65 * time.Second, "the validator's caBundle lacks the next root", false, 0},
		{67 * time.Second, "no replica serves the injector", true, 67 * time.Second},
		{3 * time.Hour, "no replica serves the injector", true, 3 * time.Hour},
	} {
		waited, logged := w.due(step.reason, start.Add(step.at))
		if logged != step.logged || waited != step.waited {
			t.Errorf("at %s, %q: logged %v after %s; want %v after %s", step.at, step.reason, logged, waited, step.logged, step.waited)
		}
	}
}
