// Package rootrotation replaces the mesh root CA without a moment in which
// the apiserver (or a sidecar) stops trusting a cert in use:
//
//  1. the next root is added beside the current one in every trust bundle
//     (the CA Secret's ca.crt, hence every webhook caBundle);
//  2. once every published caBundle holds it, the next root becomes the
//     signing root and the webhook serving certs are re-issued from it;
//  3. after a grace period the previous root is dropped.
//
// The provider records the phase and both roots in its own storage (tresor:
// the fsm-ca-bundle Secret), so a crash or restart at any point resumes from
// the recorded phase; every step is idempotent.
//
// Vault and cert-manager own their roots; for them the operator performs
// the steps in the provider (see README.md beside this file) and the webhook
// servers follow, because they publish the union of every root the provider
// returns and of the root that signed the cert being served.
package rootrotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// Phase of a rotation, as recorded by the provider.
type Phase string

const (
	// PhaseIdle: one root, no rotation in progress.
	PhaseIdle Phase = ""
	// PhaseNextRootAdded: the next root is trusted, the current one signs.
	PhaseNextRootAdded Phase = "NextRootAdded"
	// PhaseNextRootActive: the new root signs, the previous one is still
	// trusted until the grace period ends.
	PhaseNextRootActive Phase = "NextRootActive"
	// PhaseComplete: a rotation finished; one root, like PhaseIdle.
	// Providers may record it to keep the completion time.
	PhaseComplete Phase = "Complete"
)

// InProgress reports whether p is a rotation that has not finished.
func (p Phase) InProgress() bool { return p == PhaseNextRootAdded || p == PhaseNextRootActive }

// Status is the recorded state of a rotation.
type Status struct {
	Phase Phase
	// Since is when Phase was entered.
	Since time.Time
	// Current is the signing root.
	Current *x509.Certificate
	// Next is the staged root (PhaseNextRootAdded).
	Next *x509.Certificate
	// Previous is the retired root still trusted (PhaseNextRootActive).
	Previous *x509.Certificate
}

// CA is a provider that owns its root and can rotate it (tresor). Every
// method is idempotent: calling it again in the phase it leads to is a
// no-op, so concurrent or resumed rotations converge.
type CA interface {
	// AddNextRoot creates the next root and trusts it beside the current.
	AddNextRoot(ctx context.Context) error
	// ActivateNextRoot makes the next root sign; the old one stays trusted.
	ActivateNextRoot(ctx context.Context) error
	// DropPreviousRoot stops trusting the previous root.
	DropPreviousRoot(ctx context.Context) error
	// RotationStatus reads the recorded phase and roots.
	RotationStatus(ctx context.Context) (Status, error)
}

// Defaults.
const (
	DefaultGrace        = 24 * time.Hour
	DefaultPollInterval = 2 * time.Second
	// DefaultDependentsPollInterval is how often Dependents is asked again:
	// injector.RetiringRootCheck reads every bootstrap Secret of the cluster
	// with its keys (50,000 meshed pods: 100 lists of 500, some 250 MB), and
	// what it waits for changes no faster than the trust controller's
	// passes, every 30 s while a root retires. Asked every PollInterval,
	// a Secret left on the old root (one the controller logs as left as it
	// is) made every replica read them all every 2 s until its pod went.
	DefaultDependentsPollInterval = 30 * time.Second
	// DefaultSettle is how long a published caBundle must have been in the
	// API before certs from a newly trusted root are served.
	DefaultSettle = 3 * time.Second
)

// Options drive a rotation.
type Options struct {
	CA     CA
	Issuer certs.Issuer
	Client kubernetes.Interface
	// Specs are the webhook serving certs to move onto the new root.
	Specs []servingcert.Spec
	// Trusted returns nil once every published trust bundle (each webhook
	// caBundle) holds root; see webhooks.CABundlesTrust.
	Trusted func(ctx context.Context, root *x509.Certificate) error
	// Dependents, when set, returns nil once nothing outside the serving
	// certs still holds a certificate signed by root (the retiring one):
	// the previous root is dropped only then, polled every
	// DependentsPollInterval after the grace period. It must read the
	// truth each time (a resumed rotation calls it again);
	// injector.RetiringRootCheck checks the bootstrap Secrets.
	Dependents func(ctx context.Context, root *x509.Certificate) error
	// Grace between activating the new root and dropping the old one
	// (default 24h): long enough for every peer to pick up the new bundle.
	Grace time.Duration
	// PollInterval for waiting on trust bundles (default 2s).
	PollInterval time.Duration
	// DependentsPollInterval for waiting on Dependents (default
	// DefaultDependentsPollInterval).
	DependentsPollInterval time.Duration
	// Settle (default 3s).
	Settle time.Duration
	// RenewFraction for the serving-cert Store (default 2/3).
	RenewFraction float64
	Log           logr.Logger
	// OnPhase, when set, is called after each completed step (CLI
	// progress; tests use it to interrupt between phases).
	OnPhase func(Status)
	// ClockCheck, when set, is called before a run takes any step, and
	// its error ends the run: the roots and certificates a run signs are
	// valid from shortly before this process's now, so with a clock ahead
	// of the cluster's the apiserver would refuse the webhooks' serving
	// certificates until its own clock caught up. serve sets it (its
	// node's clock; Auto retries); certs rotate-root checks before it
	// starts.
	ClockCheck func(ctx context.Context) error
}

func (o Options) withDefaults() (Options, error) {
	if o.CA == nil || o.Issuer == nil || o.Client == nil || o.Trusted == nil {
		return o, errors.New("root rotation: CA, Issuer, Client and Trusted are required")
	}
	if o.Grace < 0 || o.PollInterval < 0 || o.DependentsPollInterval < 0 || o.Settle < 0 {
		return o, fmt.Errorf("root rotation: negative duration (Grace %s, PollInterval %s, DependentsPollInterval %s, Settle %s)",
			o.Grace, o.PollInterval, o.DependentsPollInterval, o.Settle)
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.DependentsPollInterval == 0 {
		o.DependentsPollInterval = DefaultDependentsPollInterval
	}
	if o.Settle == 0 {
		o.Settle = DefaultSettle
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	for _, s := range o.Specs {
		if err := s.Validate(); err != nil {
			return o, fmt.Errorf("root rotation: %w", err)
		}
	}
	return o, nil
}

// Rotate performs a full rotation: it starts one when none is in progress
// and otherwise resumes the recorded one, returning once the previous root
// has been dropped.
func Rotate(ctx context.Context, opts Options) error {
	return run(ctx, opts, true)
}

// Resume completes a rotation in progress and does nothing when idle. Auto
// calls it on start and every interval, so a rotation interrupted by a crash
// finishes.
func Resume(ctx context.Context, opts Options) error {
	return run(ctx, opts, false)
}

func run(ctx context.Context, opts Options, start bool) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if opts.ClockCheck != nil {
		if err := opts.ClockCheck(ctx); err != nil {
			return fmt.Errorf("root rotation: %w", err)
		}
	}
	for {
		st, err := opts.CA.RotationStatus(ctx)
		if err != nil {
			return fmt.Errorf("root rotation: reading status: %w", err)
		}
		switch st.Phase {
		case PhaseIdle, PhaseComplete:
			if !start {
				return nil
			}
			start = false
			opts.Log.Info("root rotation phase 1: adding the next root beside the current one", "current", describe(st.Current))
			if err := opts.CA.AddNextRoot(ctx); err != nil {
				return fmt.Errorf("root rotation: adding the next root: %w", err)
			}
		case PhaseNextRootAdded:
			if st.Next == nil {
				return errors.New("root rotation: phase NextRootAdded recorded without a next root")
			}
			if err := waitTrusted(ctx, opts, st.Next); err != nil {
				return err
			}
			opts.Log.Info("root rotation phase 2: activating the next root", "next", describe(st.Next))
			if err := opts.CA.ActivateNextRoot(ctx); err != nil {
				return fmt.Errorf("root rotation: activating the next root: %w", err)
			}
		case PhaseNextRootActive:
			if err := reissue(ctx, opts, st); err != nil {
				return err
			}
			if wait := time.Until(st.Since.Add(opts.Grace)); wait > 0 {
				opts.Log.Info("root rotation: grace period before dropping the previous root", "remaining", wait.Round(time.Second), "previous", describe(st.Previous))
				select {
				case <-ctx.Done():
					return fmt.Errorf("root rotation: interrupted during the grace period (resumes on next start): %w", ctx.Err())
				case <-time.After(wait):
				}
			}
			if err := waitDependents(ctx, opts, st.Previous); err != nil {
				return err
			}
			// Serving certs could have been rewritten from the old root
			// by a lagging replica during the grace period: check again.
			if err := reissue(ctx, opts, st); err != nil {
				return err
			}
			opts.Log.Info("root rotation phase 3: dropping the previous root", "previous", describe(st.Previous))
			if err := opts.CA.DropPreviousRoot(ctx); err != nil {
				return fmt.Errorf("root rotation: dropping the previous root: %w", err)
			}
			if opts.OnPhase != nil {
				if st, err := opts.CA.RotationStatus(ctx); err == nil {
					opts.OnPhase(st)
				}
			}
			return nil
		default:
			return fmt.Errorf("root rotation: unknown recorded phase %q", st.Phase)
		}
		if opts.OnPhase != nil {
			if st, err := opts.CA.RotationStatus(ctx); err == nil {
				opts.OnPhase(st)
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("root rotation: interrupted (resumes on next start): %w", err)
		}
	}
}

// waitTrusted waits until every published caBundle holds root, then for
// Settle so the apiserver has seen it.
func waitTrusted(ctx context.Context, opts Options, root *x509.Certificate) error {
	var last error
	var report waitReport
	for {
		last = opts.Trusted(ctx, root)
		if last == nil {
			break
		}
		// Usually a second; a stalled webhook (no replica serving it, a
		// caBundle someone keeps reverting) holds the rotation here.
		if waited, ok := report.due(last.Error(), time.Now()); ok {
			opts.Log.Info("root rotation: waiting for every caBundle to trust the next root", "reason", last.Error(), "waited", waited.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("root rotation: waiting for every caBundle to trust the next root: %w (last: %v)", ctx.Err(), last)
		case <-time.After(opts.PollInterval):
		}
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("root rotation: %w", ctx.Err())
	case <-time.After(opts.Settle):
	}
	return nil
}

// waitReportEvery is how often a wait whose reason has not changed is
// logged again.
const waitReportEvery = time.Minute

// waitReport decides when a wait is logged: at its start, when its reason
// changes, and every waitReportEvery while the reason stays the same. Logged
// once only, a rotation held for hours (no ready replica to publish the next
// root, a Secret whose pod never goes) looked, to an operator tailing the
// log, like one that had hung; logged per poll, it would flood it.
type waitReport struct {
	started, last time.Time
	reason        string
}

// due reports whether the wait, failing now for reason, is to be logged, and
// how long it has lasted.
func (w *waitReport) due(reason string, now time.Time) (time.Duration, bool) {
	switch {
	case w.started.IsZero():
		w.started = now
	case reason != w.reason:
	case now.Sub(w.last) < waitReportEvery:
		return 0, false
	}
	w.reason, w.last = reason, now
	return now.Sub(w.started).Round(time.Second), true
}

// waitDependents waits until opts.Dependents finds nothing signed by the
// retiring root; a nil check or root passes at once.
func waitDependents(ctx context.Context, opts Options, root *x509.Certificate) error {
	if opts.Dependents == nil || root == nil {
		return nil
	}
	var report waitReport
	for {
		err := opts.Dependents(ctx, root)
		if err == nil {
			return nil
		}
		if waited, ok := report.due(err.Error(), time.Now()); ok {
			opts.Log.Info("root rotation: waiting before dropping the previous root", "reason", err.Error(), "waited", waited.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("root rotation: waiting for certificates of the previous root to be re-issued (resumes on next start): %w (last: %v)", ctx.Err(), err)
		case <-time.After(opts.DependentsPollInterval):
		}
	}
}

// reissue moves every serving cert onto the signing root; certs already on
// it (re-issued by another replica or an earlier attempt) are kept.
func reissue(ctx context.Context, opts Options, st Status) error {
	if st.Current == nil {
		return errors.New("root rotation: phase NextRootActive recorded without a current root")
	}
	trusted, err := opts.Issuer.CABundle(ctx)
	if err != nil {
		return fmt.Errorf("root rotation: reading the CA bundle: %w", err)
	}
	store := &servingcert.Store{Client: opts.Client, Issuer: opts.Issuer, Log: opts.Log, RenewFraction: opts.RenewFraction}
	for _, spec := range opts.Specs {
		out, err := store.EnsureFrom(ctx, spec, trusted, st.Current)
		if err != nil {
			return fmt.Errorf("root rotation: re-issuing %s/%s: %w", spec.Namespace, spec.SecretName, err)
		}
		if err := certs.ChainsTo(out.Secret.Data[servingcert.KeyCert], st.Current, time.Now()); err != nil {
			return fmt.Errorf("root rotation: the %s issuer still signs with the previous root: %w", opts.Issuer.Provider(), err)
		}
		if out.Written {
			opts.Log.Info("root rotation: serving cert re-issued from the new root", "secret", spec.Namespace+"/"+spec.SecretName)
		}
	}
	return nil
}

// RenewServingCerts re-issues every serving cert from the issuer's current
// signing root. It is the step fsm-webhooks performs for providers that
// rotate their root themselves (Vault, cert-manager): run it after the
// provider switched its signing root, while the old root is still trusted.
func RenewServingCerts(ctx context.Context, issuer certs.Issuer, client kubernetes.Interface, specs []servingcert.Spec, log logr.Logger) error {
	trusted, err := issuer.CABundle(ctx)
	if err != nil {
		return fmt.Errorf("renewing serving certs: reading the %s CA bundle: %w", issuer.Provider(), err)
	}
	store := &servingcert.Store{Client: client, Issuer: issuer, Log: log}
	for _, spec := range specs {
		if _, err := store.Renew(ctx, spec, trusted); err != nil {
			return fmt.Errorf("renewing serving cert %s/%s: %w", spec.Namespace, spec.SecretName, err)
		}
	}
	return nil
}

// autoRetryAfter is Auto's first wait after a failed check or step; it
// doubles with each failure in a row, up to Auto's interval.
var autoRetryAfter = 10 * time.Second

// Auto rotates the root whenever it has less than before left, and resumes
// an interrupted rotation, checking every interval until ctx ends. After a
// failure (an apiserver error, a step that could not finish) it tries again
// sooner, from autoRetryAfter doubling up to interval: a rotation
// interrupted by one bad request would otherwise stay in its phase for the
// whole interval.
func Auto(ctx context.Context, opts Options, before, interval time.Duration) error {
	if before <= 0 || interval <= 0 {
		return fmt.Errorf("root rotation: auto rotation needs positive before (%s) and interval (%s)", before, interval)
	}
	retry := min(autoRetryAfter, interval)
	for {
		st, err := opts.CA.RotationStatus(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil { // cut short by the process stopping: nothing failed
				opts.Log.Error(err, "root rotation: reading status")
			}
		case st.Phase.InProgress():
			if err = Resume(ctx, opts); err != nil && ctx.Err() == nil {
				opts.Log.Error(err, "root rotation: resuming")
			}
		case st.Current != nil && time.Until(st.Current.NotAfter) < before:
			opts.Log.Info("root rotation: root nears expiry; rotating", "root", describe(st.Current))
			if err = Rotate(ctx, opts); err != nil && ctx.Err() == nil {
				opts.Log.Error(err, "root rotation")
			}
		}
		wait := interval
		if err != nil {
			wait, retry = retry, min(2*retry, interval)
		} else {
			retry = min(autoRetryAfter, interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func describe(c *x509.Certificate) string {
	if c == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s (serial %s, until %s)", c.Subject.CommonName, c.SerialNumber.Text(16), c.NotAfter.UTC().Format(time.RFC3339))
}
