package injector

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

// RotationReader reads the recorded phase of a root rotation
// (rootrotation.CA implements it).
type RotationReader interface {
	RotationStatus(ctx context.Context) (rootrotation.Status, error)
}

// TrustControllerOptions configure the TrustController.
type TrustControllerOptions struct {
	// Client reads and writes bootstrap Secrets directly (no cache: the
	// Secrets hold private keys, and only one page is in memory at a time).
	Client kubernetes.Interface
	// Issuer re-issues certificates and gives the trust bundle.
	Issuer certs.Issuer
	// Rotation names the retiring root; nil for providers that rotate their
	// roots themselves (Vault, cert-manager): a root then retires when it
	// leaves the issuer's bundle, and certificates it signed can no longer be
	// proven ours, so they are reported, not re-issued.
	Rotation RotationReader
	MeshName string
	// TrustDomain of the certificates' CNs (default cluster.local).
	TrustDomain string
	// BootstrapCertValidity of re-issued certificates (default
	// DefaultBootstrapCertValidity).
	BootstrapCertValidity time.Duration
	// Workers process Secrets concurrently (default 4).
	Workers int
	// WritesPerSecond bounds Secret updates (and so issuance) per replica
	// (default 20; burst = Workers).
	WritesPerSecond float64
	// Resync: how often the trust state is re-read, and while the trust
	// settles (SettleWindow) every Secret re-checked (default 30s). A
	// bundle change the issuer announces (certs.BundleNotifier) starts a
	// pass at once.
	Resync time.Duration
	// RetiringResync: how often every Secret is re-checked, after a clean
	// pass, while a root is retiring and the trust has settled (default
	// 5m): only a replica whose view of the CA lags for longer than
	// SettleWindow still writes a certificate of the old root then, and the
	// drop of the root waits for it (rootrotation.Options.Dependents). A
	// pass reads every bootstrap Secret with its keys (50,000 meshed pods:
	// 250 lists, some 250 MB); every Resync, through the rotation's grace
	// period (24h), that was 2,880 passes a replica.
	RetiringResync time.Duration
	// SettleWindow: after the trust changes, every Secret is re-checked
	// every Resync for this long even when nothing retires: an admission
	// that read the old bundle may write its Secret after the pass for the
	// new one listed the Secrets. The default, 2m, covers the longest
	// admission (the webhook timeout, 30s) plus the controller writer's
	// deferred flush. At start it applies only when the provider records
	// when the trust changed (TrustState.Changed) and that was less than
	// SettleWindow ago, and then for SettleWindow from start at most.
	SettleWindow time.Duration
	// RetryInterval after a pass that left a Secret undone (default 10s).
	RetryInterval time.Duration
	// PageSize of each Secret list (default 200).
	PageSize int64
	Logger   logr.Logger
}

// TrustController keeps every bootstrap Secret of the mesh on the mesh's
// trust: cacert.pem holds the roots pods must trust (old and new during a
// root rotation, new only after), and certificates signed by a retiring root
// are re-issued from the new one while the old one is still trusted
// (PlanTrust decides). A manager Runnable; every replica runs it: writes are
// merge patches carrying the read resourceVersion, so replicas and FSM's
// controller (which appends an owner reference the same way) never overwrite
// each other, they re-read and re-decide.
type TrustController struct {
	opts    TrustControllerOptions
	limiter *rate.Limiter
	kick    chan struct{}
	now     func() time.Time
}

var (
	trustUpdated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_trust_updated_total",
		Help: "Bootstrap Secrets written to follow the mesh's trust bundle (cacert.pem, re-issued certificate or both).",
	})
	trustReissued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_certs_reissued_total",
		Help: "Bootstrap certificates re-issued because a retiring root signed them.",
	})
	trustFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_trust_failures_total",
		Help: "Bootstrap Secrets the trust controller could not bring onto the mesh's trust, by step (list, invalid, issue, update).",
	}, []string{"step"})
)

// trustFailureSteps is every value of trustFailures' step label.
var trustFailureSteps = []string{"list", "invalid", "issue", "update"}

func init() {
	metrics.Registry.MustRegister(trustUpdated, trustReissued, trustFailures)
	// Exported at 0 from the start: increase() over a series that appears
	// with its first failure misses that failure.
	for _, step := range trustFailureSteps {
		trustFailures.WithLabelValues(step)
	}
}

// NewTrustController checks opts and fills the defaults.
func NewTrustController(opts TrustControllerOptions) (*TrustController, error) {
	if opts.Client == nil || opts.Issuer == nil || opts.MeshName == "" {
		return nil, errors.New("injector: TrustControllerOptions needs Client, Issuer and MeshName")
	}
	if opts.Workers < 0 || opts.WritesPerSecond < 0 || opts.Resync < 0 || opts.RetiringResync < 0 || opts.RetryInterval < 0 || opts.PageSize < 0 || opts.BootstrapCertValidity < 0 || opts.SettleWindow < 0 {
		return nil, fmt.Errorf("injector: TrustControllerOptions: negative value (Workers %d, WritesPerSecond %g, Resync %s, RetiringResync %s, RetryInterval %s, PageSize %d, BootstrapCertValidity %s, SettleWindow %s)",
			opts.Workers, opts.WritesPerSecond, opts.Resync, opts.RetiringResync, opts.RetryInterval, opts.PageSize, opts.BootstrapCertValidity, opts.SettleWindow)
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.WritesPerSecond == 0 {
		opts.WritesPerSecond = 20
	}
	if opts.Resync == 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.SettleWindow == 0 {
		opts.SettleWindow = 2 * time.Minute
	}
	if opts.RetiringResync == 0 {
		opts.RetiringResync = 5 * time.Minute
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = 10 * time.Second
	}
	if opts.PageSize == 0 {
		opts.PageSize = 200
	}
	if opts.BootstrapCertValidity == 0 {
		opts.BootstrapCertValidity = DefaultBootstrapCertValidity
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = defaultTrustDomain
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	return &TrustController{
		opts:    opts,
		limiter: rate.NewLimiter(rate.Limit(opts.WritesPerSecond), opts.Workers),
		kick:    make(chan struct{}, 1),
		now:     time.Now,
	}, nil
}

// NeedLeaderElection: every replica follows the trust; see TrustController.
func (*TrustController) NeedLeaderElection() bool { return false }

// Start runs a pass at once, then whenever the issuer announces a bundle
// change, the trust state read every Resync differs from the last clean
// pass's, the trust changed less than SettleWindow ago, a root is retiring
// and the last clean pass is RetiringResync old, or the last pass left
// work, until ctx ends.
func (c *TrustController) Start(ctx context.Context) error {
	if n, ok := c.opts.Issuer.(certs.BundleNotifier); ok {
		defer n.OnBundleChange(c.Kick)()
	}
	var (
		clean       string    // fingerprint of the trust state of the last clean pass
		cleanAt     time.Time // when that pass started
		seen        string    // fingerprint of the trust state read last
		settleUntil time.Time // passes run every Resync until then
	)
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-time.After(wait):
		}
		wait = c.opts.Resync
		ts, err := c.State(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopping: the read was cut short, nothing failed
			}
			trustFailures.WithLabelValues("list").Inc()
			c.opts.Logger.Error(err, "bootstrap Secrets: reading the mesh trust")
			wait = c.opts.RetryInterval
			continue
		}
		fp := fingerprint(ts)
		if fp != seen {
			switch {
			case seen != "":
				// Secrets built from the previous state may still be
				// written.
				settleUntil = c.now().Add(c.opts.SettleWindow)
			case !ts.Changed.IsZero():
				// At start, only when the provider says the trust changed
				// less than SettleWindow ago: a replica stopping in a
				// rollout may still write what it built from the previous
				// state, and its own pass has ended. Otherwise the other
				// replicas that saw the change settle it, and a restart
				// costs no extra passes. Changed is another clock's (the
				// replica or `certs rotate-root` that made the step): one
				// ahead of this one does not stretch the window past
				// SettleWindow from now, the change having been made by
				// now.
				settleUntil = ts.Changed.Add(c.opts.SettleWindow)
				if latest := c.now().Add(c.opts.SettleWindow); settleUntil.After(latest) {
					settleUntil = latest
				}
			}
			seen = fp
		}
		now := c.now()
		if fp == clean && !now.Before(settleUntil) && (ts.Retiring == nil || now.Before(cleanAt.Add(c.opts.RetiringResync))) {
			continue
		}
		res, err := c.Sync(ctx, ts)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.opts.Logger.Error(err, "bootstrap Secrets: following the mesh trust", "scanned", res.Scanned, "updated", res.Updated, "reissued", res.Reissued, "invalid", res.Invalid, "failed", res.Failed)
			wait = c.opts.RetryInterval
			clean = ""
		default:
			clean, cleanAt = fp, now
		}
		if res.Updated > 0 || res.Invalid > 0 || err != nil {
			c.opts.Logger.Info("bootstrap Secrets follow the mesh trust", "roots", ts.Bundle.Len(), "retiring", describeRoot(ts.Retiring),
				"scanned", res.Scanned, "updated", res.Updated, "reissued", res.Reissued, "invalid", res.Invalid, "failed", res.Failed)
		}
	}
}

// Kick asks for a pass now (it does not block).
func (c *TrustController) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// State reads the trust every bootstrap Secret must follow now.
func (c *TrustController) State(ctx context.Context) (TrustState, error) {
	var ts TrustState
	var retiring *x509.Certificate
	var changed time.Time
	if c.opts.Rotation != nil {
		st, err := c.opts.Rotation.RotationStatus(ctx)
		if err != nil {
			return ts, fmt.Errorf("reading the root rotation status: %w", err)
		}
		if st.Phase == rootrotation.PhaseNextRootActive {
			retiring = st.Previous
		}
		changed = st.Since
	}
	pem, err := c.opts.Issuer.CABundle(ctx)
	if err != nil {
		return ts, fmt.Errorf("reading the %s CA bundle: %w", c.opts.Issuer.Provider(), err)
	}
	b, err := certs.ParseBundle(c.now(), pem)
	if err != nil {
		return ts, fmt.Errorf("parsing the %s CA bundle: %w", c.opts.Issuer.Provider(), err)
	}
	return TrustState{Bundle: b, Retiring: retiring, Changed: changed}, nil
}

// SyncResult counts one pass. Invalid Secrets (PlanTrust's errors: a
// certificate no root of the mesh signed, a name, label or CN that do not
// match) are logged and counted but do not make the pass fail: retrying
// cannot fix them.
type SyncResult struct {
	Scanned, Updated, Reissued, Invalid, Failed int
}

// Sync brings every bootstrap Secret of the mesh onto ts: one page of
// Secrets at a time, Workers at once, writes rate limited. It returns an
// error naming the first failures when any Secret was left undone.
func (c *TrustController) Sync(ctx context.Context, ts TrustState) (SyncResult, error) {
	var (
		mu       sync.Mutex
		res      SyncResult
		failures []string
		scanned  atomic.Int64
	)
	fail := func(step string, s *corev1.Secret, err error) {
		if ctx.Err() != nil && step != "invalid" {
			// The process is stopping mid-pass: every Secret in flight
			// fails with the cancellation, which is no failure to count
			// or act on. The next start's pass takes the Secret up again.
			c.opts.Logger.V(1).Info("bootstrap Secret left for the next pass: stopping", "secret", s.Namespace+"/"+s.Name, "step", step, "reason", err.Error())
		} else {
			trustFailures.WithLabelValues(step).Inc()
			c.opts.Logger.Error(err, "bootstrap Secret does not follow the mesh trust", "secret", s.Namespace+"/"+s.Name, "step", step)
		}
		mu.Lock()
		defer mu.Unlock()
		if step == "invalid" {
			res.Invalid++
			return
		}
		res.Failed++
		if len(failures) < 3 {
			failures = append(failures, err.Error())
		}
	}
	err := listBootstrapSecrets(ctx, c.opts.Client, c.opts.MeshName, c.opts.PageSize, func(page []corev1.Secret) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.opts.Workers)
		for i := range page {
			s := &page[i]
			scanned.Add(1)
			g.Go(func() error {
				updated, reissued, step, err := c.follow(gctx, s, ts)
				if err != nil {
					fail(step, s, err)
				}
				mu.Lock()
				defer mu.Unlock()
				if updated {
					res.Updated++
				}
				if reissued {
					res.Reissued++
				}
				return nil
			})
		}
		return g.Wait()
	})
	res.Scanned = int(scanned.Load())
	if err != nil {
		if ctx.Err() == nil {
			trustFailures.WithLabelValues("list").Inc()
		}
		return res, err
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%d of %d bootstrap Secret(s) not brought onto the mesh trust: %s", res.Failed, res.Scanned, strings.Join(failures, "; "))
	}
	return res, nil
}

// follow brings one Secret onto ts, re-reading and re-deciding when someone
// else changed it since it was read.
func (c *TrustController) follow(ctx context.Context, s *corev1.Secret, ts TrustState) (updated, reissued bool, step string, err error) {
	log := c.opts.Logger.WithValues("secret", s.Namespace+"/"+s.Name)
	cur := s
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if cur == nil {
			fresh, err := c.opts.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur = fresh
		}
		plan, planErr := PlanTrust(cur, ts, c.opts.TrustDomain, c.opts.BootstrapCertValidity, c.now())
		if planErr != nil {
			step = "invalid"
			if !plan.Changes() {
				return planErr
			}
			// cacert.pem is only trust: pods still get the bundle. The
			// pass logs the Secret once (fail), saying what was done; a
			// line here as well made two error lines of one problem.
			planErr = fmt.Errorf("certificate left as it is, cacert.pem updated: %w", planErr)
		}
		if !plan.Changes() {
			return nil
		}
		if err := c.limiter.Wait(ctx); err != nil {
			return err
		}
		var cert *certs.Certificate
		if plan.Reissue {
			var err error
			if cert, err = c.opts.Issuer.Issue(ctx, plan.Request); err != nil {
				step = "issue"
				return fmt.Errorf("re-issuing %s: %w", plan.Request.CommonName, err)
			}
		}
		patch, err := TrustPatch(cur, plan, cert)
		if err != nil {
			step = "invalid"
			return err
		}
		_, err = c.opts.Client.CoreV1().Secrets(cur.Namespace).Patch(ctx, cur.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			step = "update"
			cur = nil // re-read on conflict
			return err
		}
		updated, reissued = true, plan.Reissue
		if reissued {
			trustReissued.Inc()
		}
		trustUpdated.Inc()
		log.V(1).Info("bootstrap Secret follows the mesh trust", "reason", plan.Reason, "reissued", plan.Reissue)
		if planErr != nil {
			return planErr
		}
		return nil
	})
	if apierrors.IsNotFound(err) {
		// The pod and its Secret are gone: nothing to follow.
		return updated, reissued, "", nil
	}
	if err != nil && step == "" {
		step = "update"
	}
	return updated, reissued, step, err
}

// listBootstrapSecrets calls fn with each page of the bootstrap Secrets of
// meshName (of every mesh when empty) in every namespace, selected by the
// injector's labels.
func listBootstrapSecrets(ctx context.Context, cs kubernetes.Interface, meshName string, pageSize int64, fn func([]corev1.Secret) error) error {
	sel := bootstrapSelector(meshName).String()
	opts := metav1.ListOptions{LabelSelector: sel, Limit: pageSize}
	for {
		list, err := cs.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing bootstrap Secrets (%s): %w", sel, err)
		}
		if err := fn(list.Items); err != nil {
			return err
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

// bootstrapSelector selects the bootstrap Secrets of meshName; of every
// mesh when meshName is empty.
func bootstrapSelector(meshName string) labels.Selector {
	hasUUID, _ := labels.NewRequirement(ProxyUUIDLabel, selection.Exists, nil)
	isOurs, _ := labels.NewRequirement(appNameLabel, selection.Equals, []string{appNameValue})
	sel := labels.NewSelector().Add(*hasUUID, *isOurs)
	if meshName != "" {
		mesh, _ := labels.NewRequirement(appInstanceLabel, selection.Equals, []string{meshName})
		sel = sel.Add(*mesh)
	}
	return sel
}

// RetiringRootCheck returns the check rootrotation.Options.Dependents takes:
// nil once no bootstrap Secret holds a certificate signed by root, otherwise
// an error counting them and naming a few. It reads the cluster itself each
// time, so a rotation resumed after a crash checks the truth, and a
// certificate a lagging replica issued from the old root after an earlier
// check still holds the drop back. Every mesh's Secrets are read: what
// depends on a root is what it signed, whatever the mesh label says, so a
// rotation run with a wrong mesh name (or two meshes sharing one CA) still
// waits for every pod the drop would cut off.
func RetiringRootCheck(cs kubernetes.Interface) func(ctx context.Context, root *x509.Certificate) error {
	return func(ctx context.Context, root *x509.Certificate) error {
		var n, total int
		var examples []string
		err := listBootstrapSecrets(ctx, cs, "", 500, func(page []corev1.Secret) error {
			for i := range page {
				total++
				chain, err := certs.ParseCertsPEM(page[i].Data[RepoCertKey])
				if err != nil || !signedBy(chain, root) {
					continue
				}
				n++
				if len(examples) < 3 {
					examples = append(examples, page[i].Namespace+"/"+page[i].Name)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d of %d bootstrap Secret(s) still hold a certificate signed by the retiring root %s (%s): the injector's trust controller re-issues them (is `serve` running with the injector?), except those it logs as left as they are (a CN it will not sign, such as a ServiceAccount name with a dot FSM's injector admitted), which wait for their pod to be deleted or re-created",
				n, total, describeRoot(root), strings.Join(examples, ", "))
		}
		return nil
	}
}

func fingerprint(ts TrustState) string {
	fp := string(ts.Bundle.PEM())
	if ts.Retiring != nil {
		fp += "retiring:" + string(ts.Retiring.Raw)
	}
	return fp
}

func describeRoot(c *x509.Certificate) string {
	if c == nil {
		return "<none>"
	}
	return fmt.Sprintf("%q (serial %s)", c.Subject.CommonName, c.SerialNumber.Text(16))
}
