package injector

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// SecretWriter names who writes a meshed pod's bootstrap Secret
// (--bootstrap-secret-writer; docs/design.md, designs (a) and (b)).
type SecretWriter string

const (
	// SecretWriterAdmission writes the Secret inside the pod's admission,
	// before the pod is stored (FSM's way, and the default): the pod create
	// waits for the Secret write.
	SecretWriterAdmission SecretWriter = "admission"
	// SecretWriterController writes it from the controller once the pod is
	// stored: the admission only patches the pod, and the kubelet, which
	// does not start a pod whose Secret volume is missing, waits for it.
	SecretWriterController SecretWriter = "controller"
)

// Validate reports a writer that is neither.
func (w SecretWriter) Validate() error {
	switch w {
	case SecretWriterAdmission, SecretWriterController:
		return nil
	}
	return fmt.Errorf("must be %q or %q", SecretWriterAdmission, SecretWriterController)
}

// SecretHandoff bounds the admission writer (SecretWriterAdmission with
// Options.Pending set): an admission writes its pod's Secret itself while
// fewer than InFlight of those creates are under way and its create answers
// within Budget, and otherwise hands the Secret to the writer controller,
// which writes it once the pod is stored (SecretWriterController's way). A
// healthy apiserver answers a Secret create in milliseconds, so this changes
// nothing until it falls behind; then a pod create no longer waits on a
// Secret create queued behind hundreds of others. Offered 300 pods/s, more
// than the apiserver here could store, the admission writer without it
// collapsed to 19 pods/s with 81% of creates timed out, each holding its
// Secret's create (docs/performance.md, docs/design.md).
type SecretHandoff struct {
	// InFlight is how many admissions may wait on their Secret create at
	// once; 0 means DefaultHandoffInFlight.
	InFlight int
	// Budget is how long an admission waits for its Secret create; 0 means
	// DefaultHandoffBudget. Never more than half of the time the admission
	// has left (handoffBudget).
	Budget time.Duration
}

const (
	// DefaultHandoffInFlight: at 100 pods/s a replica has one or two
	// Secret creates under way (a few milliseconds each); 16 is an
	// apiserver answering them 100 times slower, or a burst.
	DefaultHandoffInFlight = 16
	// DefaultHandoffBudget: a second is far beyond a healthy create and
	// far inside the webhook's timeout.
	DefaultHandoffBudget = time.Second
)

func (o SecretHandoff) withDefaults() (SecretHandoff, error) {
	if o.InFlight < 0 {
		return o, fmt.Errorf("in-flight bound %d: must be 0 (the default, %d) or more", o.InFlight, DefaultHandoffInFlight)
	}
	if o.Budget < 0 {
		return o, fmt.Errorf("budget %s: must be 0 (the default, %s) or more", o.Budget, DefaultHandoffBudget)
	}
	if o.InFlight == 0 {
		o.InFlight = DefaultHandoffInFlight
	}
	if o.Budget == 0 {
		o.Budget = DefaultHandoffBudget
	}
	return o, nil
}

// pendingSecret is what an admission decided for a pod's bootstrap Secret,
// kept until the controller sees the pod stored and writes it.
type pendingSecret struct {
	proxyUUID  string
	commonName string
	keyAlg     certs.KeyAlgorithm
	boot       BootstrapConfig
	admitted   time.Time
	// stored: the writer saw the pod stored. The TTL no longer applies: the
	// entry is the pod's until it is written, however late the writer gets
	// to it.
	stored bool
	// podCreated is the stored pod's creationTimestamp (zero: not seen),
	// which tells a Secret created before any repair could be (countFound).
	podCreated metav1.Time
	// built is the Secret an admission already issued a certificate for
	// and could not create in time (SecretHandoff): the controller creates
	// it as it is rather than sign a second certificate, and the admission's
	// abandoned create may land after all. Nil: build it.
	built *corev1.Secret
}

// PendingSecrets holds the bootstrap Secrets admitted pods still need, keyed
// by the Secret's namespace/name, in the process that admitted them. An
// entry whose pod never appears (a dry run of the whole chain, a later
// webhook or quota refusing the pod) expires after DefaultOrphanGracePeriod
// unwritten: with this writer no Secret is made for a pod that does not
// exist.
type PendingSecrets struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]pendingSecret
	closed  bool // the writer stopped: admissions write their Secrets
	ttl     time.Duration
	now     func() time.Time
}

// NewPendingSecrets returns an empty store whose entries expire after ttl
// (0: DefaultOrphanGracePeriod, as long as a bootstrap Secret waits for its
// pod with the admission writer); SetupSecretWriter runs its sweep.
func NewPendingSecrets(ttl time.Duration) *PendingSecrets {
	if ttl <= 0 {
		ttl = DefaultOrphanGracePeriod
	}
	return &PendingSecrets{entries: map[types.NamespacedName]pendingSecret{}, ttl: ttl, now: time.Now}
}

// add records mut's Secret (built, when not nil, is it with its certificate,
// its create sent and abandoned); false once the writer has stopped, and
// then the admission must write the Secret itself.
func (p *PendingSecrets) add(namespace, proxyUUID string, mut *Mutation, built *corev1.Secret) bool {
	key := types.NamespacedName{Namespace: namespace, Name: BootstrapSecretName(proxyUUID)}
	e := pendingSecret{proxyUUID: proxyUUID, commonName: mut.CommonName, keyAlg: mut.KeyAlgorithm, boot: mut.Bootstrap, admitted: p.now(), built: built}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.entries[key] = e
	return true
}

// get returns key's entry unless it has expired. The TTL is for the pods
// never stored (refused by a later webhook): a stored pod's entry is
// returned at any age (stored), as the writer may reach it late under the
// very overload that hands Secrets off.
func (p *PendingSecrets) get(key types.NamespacedName, stored bool) (pendingSecret, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[key]
	if ok && p.expired(e) && !stored {
		return pendingSecret{}, false
	}
	return e, ok
}

func (p *PendingSecrets) has(key types.NamespacedName) bool {
	_, ok := p.get(key, false)
	return ok
}

// markStored records that key's pod is stored, created at created, if its
// entry has not expired, and reports whether it had.
func (p *PendingSecrets) markStored(key types.NamespacedName, created metav1.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[key]
	if !ok || p.expired(e) {
		return false
	}
	e.stored = true
	if !created.IsZero() && (e.podCreated.IsZero() || created.Before(&e.podCreated)) {
		e.podCreated = created // the first pod of the uuid: a repair follows it
	}
	p.entries[key] = e
	return true
}

// expired: e's pod was never seen stored within the TTL (p.mu held).
func (p *PendingSecrets) expired(e pendingSecret) bool {
	return !e.stored && p.now().Sub(e.admitted) > p.ttl
}

// take removes key's entry and returns it: a worker claims the entry it
// writes, so that close does not hand it to the shutdown flush as well
// (two certificates for one pod, one Secret counted twice).
func (p *PendingSecrets) take(key types.NamespacedName) (pendingSecret, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[key]
	delete(p.entries, key)
	return e, ok
}

// putBack returns an entry whose write failed, for the retry; once closed,
// the flush has run and the pod is left to the repair of a replica.
func (p *PendingSecrets) putBack(key types.NamespacedName, e pendingSecret) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.entries[key] = e
	}
}

func (p *PendingSecrets) remove(key types.NamespacedName) {
	p.mu.Lock()
	delete(p.entries, key)
	p.mu.Unlock()
}

// expire drops the entries older than the TTL whose pod was never seen
// stored, and returns how many.
func (p *PendingSecrets) expire() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, e := range p.entries {
		if p.expired(e) {
			delete(p.entries, k)
			n++
		}
	}
	return n
}

// close makes every later add fail and returns the unexpired entries, which
// the caller now owns.
func (p *PendingSecrets) close() map[types.NamespacedName]pendingSecret {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	out := p.entries
	p.entries = map[types.NamespacedName]pendingSecret{}
	for k, e := range out {
		if p.expired(e) {
			delete(out, k)
		}
	}
	return out
}

// Len is the number of entries, expired ones included until the next sweep.
func (p *PendingSecrets) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// Who wrote a bootstrap Secret: the writer label of
// fsm_webhooks_injector_bootstrap_secrets_written_total.
const (
	writtenByAdmission  = "admission"
	writtenByController = "controller"
	writtenByRepair     = "repair"

	// Why an admission handed its Secret to the controller.
	handoffBusy = "busy"
	handoffSlow = "slow"
)

var (
	secretsFound = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_secrets_found_written_total",
		Help: "Bootstrap Secrets a writer had a certificate for and found already written by another writer (a repair and the admitting replica's late write racing for one pod), by the writer whose certificate was discarded: controller, repair. Not writes: the Secret is counted once, in fsm_webhooks_injector_bootstrap_secrets_written_total, by whoever created it.",
	}, []string{"writer"})
	secretsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_secrets_written_total",
		Help: "Bootstrap Secrets the injector created, by writer: admission (inside the pod's admission; also a create the admission stopped waiting for that landed after all, counted when it is found), controller (after the pod was stored: --bootstrap-secret-writer=controller, or handed off by the admission), repair (a stored injected pod found without its Secret).",
	}, []string{"writer"})
	secretDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fsm_webhooks_injector_secret_delay_seconds",
		Help:    "With --bootstrap-secret-writer=controller, and for Secrets the admission writer handed off: time from a pod's admission to the writer controller's create of its bootstrap Secret, once the pod was stored (what the kubelet may wait for before it mounts the volume). Only Secrets the controller created: one it found already written (an abandoned admission create that landed, another replica's repair) was stored at a moment it does not know, and the shutdown flush's writes are not observed.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	handoffs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_bootstrap_secret_handoffs_total",
		Help: "With --bootstrap-secret-writer=admission: bootstrap Secrets an admission handed to the writer controller instead of writing them, by reason: busy (--injector-secret-handoff-in-flight creates already under way), slow (the create outlasted --injector-secret-handoff-budget).",
	}, []string{"reason"})
	pendingExpired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_pending_secrets_expired_total",
		Help: "With --bootstrap-secret-writer=controller, and for Secrets the admission writer handed off: admitted pods whose bootstrap Secret was never written because the pod never appeared (a dry run, a later webhook or quota refused it).",
	})
)

// countAbandonedCreateLanded counts, as the admission's, a Secret the
// admission's create wrote after the admission had stopped waiting for it
// (handed off as slow): the apiserver finishes a write its client gave up
// on. Whoever finds it (the writer controller, or the admission's retry once
// the controller has stopped) counts it, once: its record goes with it.
func countAbandonedCreateLanded() { secretsWritten.WithLabelValues(writtenByAdmission).Inc() }

func init() {
	for _, w := range []string{writtenByAdmission, writtenByController, writtenByRepair} {
		secretsWritten.WithLabelValues(w)
	}
	for _, w := range []string{writtenByController, writtenByRepair} {
		secretsFound.WithLabelValues(w)
	}
	for _, r := range []string{handoffBusy, handoffSlow} {
		handoffs.WithLabelValues(r)
	}
	metrics.Registry.MustRegister(secretsWritten, secretsFound, secretDelay, handoffs, pendingExpired)
}

// DefaultRepairDelay is how long after seeing an injected pod stored a
// replica that did not admit it looks for the pod's bootstrap Secret, and
// writes one if it is missing: the replica that admitted it (controller
// writer) or the admission itself normally wrote it long before. Only a
// replica that stopped between the two, or a Secret deleted by hand, leaves
// a pod without one; the kubelet would never start it.
const DefaultRepairDelay = 10 * time.Second

// writeAction is what the writer does for one pod's bootstrap Secret.
type writeAction int

const (
	// writeNothing: the Secret exists, or the pod is gone, going or
	// finished.
	writeNothing writeAction = iota
	// writePending: write it from this process's admission record.
	writePending
	// writeRepair: no record here; rebuild it from the stored pod.
	writeRepair
)

// decideWrite is the writer's decision for a pod's bootstrap Secret from what
// the caches hold: whether the Secret exists, the pod's state, and whether
// this process admitted the pod and still holds what the Secret needs.
func decideWrite(secretExists bool, pod podState, podDeleting, pending bool) writeAction {
	switch {
	case secretExists, pod != podExists, podDeleting:
		return writeNothing
	case pending:
		return writePending
	}
	return writeRepair
}

// SecretWriterOptions configure the bootstrap Secret writer.
type SecretWriterOptions struct {
	// Handler is the injector whose pods the writer serves: its client (the
	// admission path's, sized for one Secret per pod), issuer, settings,
	// mesh and pending Secrets (Options.Pending) are the writer's.
	Handler *Handler
	// RepairDelay defaults to DefaultRepairDelay.
	RepairDelay time.Duration
	// Finished, when set (SetupSecretController's), spares the repair of a
	// finished pod, whose Secret the cleanup deleted, its two API reads at
	// every start of every replica; without it the pod's phase, read from
	// the API server, stops the repair.
	Finished *FinishedPods
	Logger   logr.Logger
}

// SetupSecretWriter registers the controller that writes bootstrap Secrets
// after their pod is stored: at once for the pods this process admitted
// and recorded (the controller writer, or the admission writer's hand-offs),
// and, for any injected pod of the mesh found
// without its Secret RepairDelay after it was seen, rebuilt from the pod.
// It shares the pod cache and its uuid index with SetupSecretController,
// which must be set up first.
func SetupSecretWriter(mgr manager.Manager, opts SecretWriterOptions) error {
	if opts.Handler == nil {
		return fmt.Errorf("injector: SecretWriterOptions.Handler not set")
	}
	if opts.RepairDelay <= 0 {
		opts.RepairDelay = DefaultRepairDelay
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = mgr.GetLogger()
	}
	h := opts.Handler
	w := &secretWriter{cache: mgr.GetClient(), h: h, pending: h.opts.Pending, repairDelay: opts.RepairDelay, finished: opts.Finished, log: opts.Logger, now: time.Now}
	if w.pending != nil {
		if err := mgr.Add(manager.RunnableFunc(w.runPending)); err != nil {
			return fmt.Errorf("injector: running the pending Secret store: %w", err)
		}
	}
	err := builder.ControllerManagedBy(mgr).
		Named("injector-bootstrap-writer").
		WatchesMetadata(&corev1.Pod{}, handler.Funcs{CreateFunc: w.podCreated}).
		// The informer Options.Namespaces reads: a namespace back in the
		// mesh requeues its pods still waiting for their Secret.
		Watches(&corev1.Namespace{}, handler.Funcs{UpdateFunc: w.namespaceUpdated}).
		// Each worker waits on a certificate and a create round trip; as
		// many as the cleanup's, so writes keep up with the same churn.
		WithOptions(controller.Options{MaxConcurrentReconciles: secretWorkers, LogConstructor: plainReconcileLog(opts.Logger, "injector-bootstrap-writer")}).
		Complete(w)
	if err != nil {
		return fmt.Errorf("injector: setting up bootstrap Secret writer: %w", err)
	}
	return nil
}

type secretWriter struct {
	cache       client.Reader
	h           *Handler
	pending     *PendingSecrets // nil: the admission writes
	repairDelay time.Duration
	finished    *FinishedPods // nil: none
	log         logr.Logger
	now         func() time.Time
	// outOfMesh holds the Secrets (namespace/name) already reported as
	// waiting for their namespace to come back to the mesh: one Event and
	// one log line each, not one per recheck.
	outOfMesh sync.Map
}

// outOfMeshRecheck is how often the writer looks again at a pod waiting for
// its namespace to come back to the mesh: a cache read, no certificate and
// no create the chart's policy would refuse. The namespace's own update
// requeues it at once (namespaceUpdated); the recheck only forgets the pods
// deleted meanwhile.
const outOfMeshRecheck = time.Minute

// flushTimeout bounds the writes of the records left when the writer stops:
// within the manager's 30 s graceful shutdown, and within the chart's 65 s
// grace period after its 5 s preStop, 8 s drain and 30 s for answers in
// flight.
const flushTimeout = 20 * time.Second

// runPending drops expired records every 10 s (or every TTL, if shorter)
// until ctx ends. Then, as the process stops (serve stops the manager once
// its listeners are down; an embedding that stops it first may still answer
// admissions), it closes the store, so any admission still answered writes
// its Secret itself, and writes the Secrets still recorded:
// their pods may be stored after this replica's informer stops, and no
// other replica holds their record (one would rebuild them after
// DefaultRepairDelay; after `helm uninstall` none is left). A flushed Secret
// whose pod never appears goes with any replica's sweep.
func (w *secretWriter) runPending(ctx context.Context) error {
	t := time.NewTicker(min(10*time.Second, w.pending.ttl))
	defer t.Stop()
	for stopping := false; !stopping; {
		select {
		case <-t.C:
			pendingExpired.Add(float64(w.pending.expire()))
		case <-ctx.Done():
			stopping = true
		}
	}
	left := w.pending.close()
	if len(left) == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	// As many at once as the controller's workers: one after the other, 71
	// records (a Vault CA on a loaded machine) outlasted flushTimeout.
	var g errgroup.Group
	g.SetLimit(secretWorkers)
	var failed atomic.Int32
	for key, e := range left {
		g.Go(func() error {
			if fix := w.flushRefused(fctx, key.Namespace); fix != "" {
				failed.Add(1)
				w.log.Info("recorded bootstrap Secret not written at shutdown: its namespace is out of the mesh", "secret", key.String(), "reason", fix)
				return nil
			}
			if _, err := w.write(fctx, key.Namespace, e, writtenByController); err != nil {
				failed.Add(1)
				w.log.Error(err, "writing a recorded bootstrap Secret at shutdown", "secret", key.String())
			}
			return nil
		})
	}
	_ = g.Wait()
	w.log.Info("wrote the recorded bootstrap Secrets at shutdown", "count", len(left)-int(failed.Load()), "failed", failed.Load())
	return nil
}

// podCreated queues the Secret of a stored injected pod: at once when this
// process admitted it, after RepairDelay otherwise (the informer's first
// list reports every existing pod this way, each then a cache lookup).
func (w *secretWriter) podCreated(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	id := e.Object.GetLabels()[ProxyUUIDLabel]
	if id == "" {
		return
	}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: BootstrapSecretName(id)}}
	if w.pending != nil && w.pending.markStored(req.NamespacedName, e.Object.GetCreationTimestamp()) {
		q.Add(req)
		return
	}
	q.AddAfter(req, w.repairDelay)
}

func (w *secretWriter) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := w.reconcile(ctx, req.NamespacedName)
	switch {
	case stopping(ctx, err):
		// The manager is stopping: the shutdown flush writes what this
		// process recorded, and another replica (or the next start)
		// repairs the rest. controller-runtime would log this as an error.
		w.log.V(1).Info("bootstrap Secret not written: the writer is stopping", "secret", req.String(), "reason", err.Error())
		return reconcile.Result{}, nil
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// The namespace controller deletes the pod too; every retry would
		// be refused the same way, and logged as an error. The record goes
		// too, or the shutdown flush would try it again.
		if w.pending != nil {
			w.pending.remove(req.NamespacedName)
		}
		w.log.Info("bootstrap Secret not written: its namespace is being deleted, and its pod with it", "secret", req.String(), "reason", err.Error())
		return reconcile.Result{}, nil
	}
	return res, err
}

func (w *secretWriter) reconcile(ctx context.Context, key types.NamespacedName) (reconcile.Result, error) {
	id, ok := uuidOfSecret(key.Name)
	if !ok {
		return reconcile.Result{}, nil
	}
	secret := metadataOf(secretKind)
	err := w.cache.Get(ctx, key, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("reading bootstrap Secret %s: %w", key, err)
	}
	secretExists := err == nil
	podMeta, err := cachedPodWithUUID(ctx, w.cache, key.Namespace, id)
	if err != nil {
		return reconcile.Result{}, err
	}
	pod, deleting := podNotSeen, false
	if podMeta != nil {
		pod, deleting = podExists, podMeta.DeletionTimestamp != nil
	}
	if !secretExists && pod == podExists && w.finished.has(ctx, key.Namespace, id, podMeta.UID) {
		// Its containers never start again: a Secret would only be
		// deleted again by the cleanup.
		pod = podFinished
	}
	pending := false
	if w.pending != nil {
		_, pending = w.pending.get(key, pod == podExists)
	}
	action := decideWrite(secretExists, pod, deleting, pending)
	if action == writeRepair && w.nodeLevel(ctx) {
		return reconcile.Result{}, nil
	}
	var ns *corev1.Namespace
	if action != writeNothing {
		var stop *reconcile.Result
		ns, stop, err = w.namespaceInMesh(ctx, podMeta, key, pending)
		if err != nil {
			return reconcile.Result{}, err
		}
		if stop != nil {
			return *stop, nil
		}
	}
	switch action {
	case writeNothing:
		w.outOfMesh.Delete(key)
		if w.pending == nil {
			return reconcile.Result{}, nil
		}
		// Claimed, not read and removed: the shutdown flush, closing the
		// store meanwhile, would get the record too, create its Secret, be
		// answered AlreadyExists and count it a second time.
		entry, claimed := w.pending.take(key)
		if claimed && pending && secretExists && entry.built != nil {
			// Its certificate is signed: either the admission's abandoned
			// create landed, or another writer was first. Not cut short by
			// the manager stopping, as a write is not (writePending).
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			if err := w.countFound(cctx, key, entry, writtenByController); err != nil {
				w.pending.putBack(key, entry)
				return reconcile.Result{}, err
			}
		}
		return reconcile.Result{}, nil
	case writePending:
		entry, claimed := w.pending.take(key)
		if !claimed {
			return reconcile.Result{}, nil // the shutdown flush has it
		}
		// The record is this worker's alone now: the manager cancels ctx
		// when it stops, at the moment runPending closes the store, and a
		// write cut short then could no longer be put back for the flush.
		// Bounded as the flush's writes are.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		created, err := w.write(wctx, key.Namespace, entry, writtenByController)
		if err != nil {
			w.pending.putBack(key, entry)
			w.warnNotWritten(ctx, podMeta, key, err)
			return reconcile.Result{}, err
		}
		if created {
			// Only a create's answer says when the Secret was stored: one
			// found written was stored earlier, at a moment not known here
			// (its creationTimestamp has 1 s resolution).
			secretDelay.Observe(w.now().Sub(entry.admitted).Seconds())
		}
		return reconcile.Result{}, nil
	}
	if w.pending != nil {
		w.pending.remove(key) // an expired record: repair rebuilds from the pod
	}
	err = w.repair(ctx, podMeta, id, ns)
	if err != nil {
		w.warnNotWritten(ctx, podMeta, key, err)
	}
	return reconcile.Result{}, err
}

// namespaceInMesh reads key's namespace (meshExclusion) and says whether its
// Secret is not to be written now (stop, with when to look again) because
// the mesh does not inject the namespace now, by the admission's own rule
// (namespaceExcluded): the chart's Secret write policy would refuse the
// create, after a certificate was signed for it, on every retry. The
// namespace left the mesh after the pod was admitted; the pod keeps waiting
// in ContainerCreating, reported once, until the namespace comes back
// (namespaceUpdated requeues it then). Only a pod this replica recorded is
// reported, and only once the API server confirms what the cache says
// (never again for its rechecks): one without a record may be another
// mesh's, or run on a Secret FSM wrote.
func (w *secretWriter) namespaceInMesh(ctx context.Context, pod *metav1.PartialObjectMetadata, key types.NamespacedName, pending bool) (*corev1.Namespace, *reconcile.Result, error) {
	_, reported := w.outOfMesh.Load(key)
	ns, skip, label, err := w.meshExclusion(ctx, key.Namespace, pending && !reported)
	switch {
	case err != nil:
		return nil, nil, err
	case skip == "":
		w.outOfMesh.Delete(key)
		return ns, nil, nil
	case !pending:
		// No record: a pod this replica did not admit (another mesh's, or
		// one FSM injected, whose Secret lacks our labels and so is never
		// in the cache). Nothing to write or report while the namespace is
		// out; namespaceUpdated requeues it once the namespace is back.
		return ns, &reconcile.Result{}, nil
	}
	w.reportOutOfMesh(pod, key, outOfMeshFix(ns.Name, w.h.mesh.Name, skip, label))
	return ns, &reconcile.Result{RequeueAfter: outOfMeshRecheck}, nil
}

// meshExclusion reads namespace from the cache and says why the mesh does
// not inject it (namespaceExcluded; empty: it does), with the label
// deciding it. With confirm, a cache that says it is out of the mesh
// (contradicting the namespaceSelector: staleCached) is confirmed with the
// API server, as the admission confirms it (Handler.readStale): the pod was
// admitted through that selector, so the namespace was in the mesh a moment
// ago, and a cache that has not yet seen `fsm namespace add` made just
// before would report, falsely, a pod whose Secret it writes once it has.
// Only that case pays the read; a namespace in the mesh is the cache's alone.
func (w *secretWriter) meshExclusion(ctx context.Context, namespace string, confirm bool) (*corev1.Namespace, SkipReason, string, error) {
	ns := &corev1.Namespace{}
	if err := w.h.opts.Namespaces.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return nil, "", "", fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	skip, label := w.excluded(ns)
	why := staleCached(ns, skip)
	if !confirm || skip == "" || why == "" {
		return ns, skip, label, nil
	}
	live, err := w.h.readStale(ctx, namespace, why)
	if err != nil {
		return nil, "", "", fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	if live == nil {
		return ns, skip, label, nil // deleted: its pods go with it
	}
	w.log.V(1).Info("namespace in the informer cache stale, read from the API server", "namespace", namespace, "cached", why)
	skip, label = w.excluded(live)
	return live, skip, label, nil
}

// excluded is why the mesh does not inject ns, and the label deciding it
// (namespaceExcluded); empty when it injects it.
func (w *secretWriter) excluded(ns *corev1.Namespace) (SkipReason, string) {
	return namespaceExcluded(ns, w.h.mesh.Name, w.h.mesh.FSMNamespace)
}

// flushRefused says why the chart's policy would refuse the shutdown
// flush's create of a Secret in namespace (empty: write it). Every record is
// of a pod this replica admitted, so a cache saying the namespace is out is
// confirmed first (meshExclusion). Any replica writes it once the namespace
// is back (namespaceUpdated); a namespace that cannot be read is tried.
func (w *secretWriter) flushRefused(ctx context.Context, namespace string) string {
	_, skip, label, err := w.meshExclusion(ctx, namespace, true)
	if err != nil || skip == "" {
		return ""
	}
	return outOfMeshFix(namespace, w.h.mesh.Name, skip, label)
}

// outOfMeshFix says why the mesh does not inject namespace, and what makes
// it inject it again.
func outOfMeshFix(namespace, mesh string, skip SkipReason, label string) string {
	switch skip {
	case SkipNotMonitored:
		return fmt.Sprintf("namespace %s is not in mesh %s: label it %s=%s", namespace, mesh, label, mesh)
	case SkipIgnored:
		return fmt.Sprintf("namespace %s is excluded from mesh %s by its label %s: remove the label", namespace, mesh, label)
	}
	return fmt.Sprintf("mesh %s never injects namespace %s (%s)", mesh, namespace, skip)
}

// reportOutOfMesh logs, and tells the pod's user with a Warning Event, once
// per Secret until it is written or its pod is gone, why it waits.
func (w *secretWriter) reportOutOfMesh(pod *metav1.PartialObjectMetadata, key types.NamespacedName, fix string) {
	if _, seen := w.outOfMesh.LoadOrStore(key, struct{}{}); seen {
		w.log.V(1).Info("bootstrap Secret still waiting for its namespace", "secret", key.String(), "reason", fix)
		return
	}
	w.log.Info("bootstrap Secret not written until its namespace is back in the mesh", "secret", key.String(), "reason", fix)
	if w.h.opts.Recorder == nil || pod == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	w.h.opts.Recorder.Eventf(ref, nil, corev1.EventTypeWarning, EventBootstrapSecretNotWritten, "WriteBootstrapSecret", "%s",
		truncateNote(fmt.Sprintf("bootstrap Secret %s not written: %s, and it is written at once (the pod's containers wait for it)", key.Name, fix)))
}

// namespaceUpdated queues, when a namespace comes back to the mesh, the
// Secrets of its injected pods the cache shows without one: pods admitted
// before it left, whose record a restart lost, would otherwise wait for the
// next restart's repair. Caches only.
func (w *secretWriter) namespaceUpdated(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	old, okOld := e.ObjectOld.(*corev1.Namespace)
	cur, okNew := e.ObjectNew.(*corev1.Namespace)
	if !okOld || !okNew {
		return
	}
	wasOut, _ := w.excluded(old)
	isOut, _ := w.excluded(cur)
	if wasOut == "" || isOut != "" {
		return
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := w.cache.List(ctx, pods, client.InNamespace(cur.Name)); err != nil {
		w.log.Error(err, "listing the injected pods of a namespace back in the mesh", "namespace", cur.Name)
		return
	}
	for _, p := range pods.Items {
		id := p.Labels[ProxyUUIDLabel]
		if id == "" {
			continue
		}
		key := types.NamespacedName{Namespace: cur.Name, Name: BootstrapSecretName(id)}
		if w.cache.Get(ctx, key, metadataOf(secretKind)) == nil {
			continue
		}
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

// nodeLevel: under NodeLevel interception no pod needs a Secret (Mutate asks
// for none), and every meshed pod lacks one: its repair, queued on every
// replica for each pod created and for every pod at each start, would read
// the pod from the API server only to write nothing (50,000 GETs per replica
// start with 50,000 meshed pods), or report its namespace out of the mesh.
// The settings are cached; one that cannot be read is read again, and
// reported, by the repair.
func (w *secretWriter) nodeLevel(ctx context.Context) bool {
	s, err := w.h.opts.MeshConfig.Settings(ctx)
	return err == nil && s.InterceptionMode == InterceptionNodeLevel
}

// warnNotWritten tells the pod's user, on the pod, why its bootstrap Secret
// is not written yet. The pod was admitted without it (handed to this
// controller: the CA or the apiserver was busy) and waits in
// ContainerCreating ("secret not found") while the writer retries; the
// cause (a CA that refuses or does not answer, named by the error) was
// otherwise only in this server's log. Not when the manager stops: another
// replica, or the shutdown flush, takes the Secret over.
func (w *secretWriter) warnNotWritten(ctx context.Context, pod *metav1.PartialObjectMetadata, key types.NamespacedName, err error) {
	if w.h.opts.Recorder == nil || pod == nil || stopping(ctx, err) {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	w.h.opts.Recorder.Eventf(ref, nil, corev1.EventTypeWarning, EventBootstrapSecretNotWritten, "WriteBootstrapSecret", "%s",
		truncateNote(fmt.Sprintf("bootstrap Secret %s not written yet, retried (the pod's containers wait for it): %v", key.Name, err)))
}

// EventBootstrapSecretNotWritten is the reason of the Warning Event on a pod
// whose bootstrap Secret the writer controller failed to write.
const EventBootstrapSecretNotWritten = "BootstrapSecretNotWritten"

// uuidOfSecret is the proxy uuid a bootstrap Secret's name carries.
func uuidOfSecret(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, BootstrapSecretPrefix)
	if !ok || id == "" {
		return "", false
	}
	return id, true
}

// repair rebuilds the Secret of a stored pod this mesh injected from the pod
// as the API server has it now, its namespace and the current settings, the
// way a copy of an injected pod is re-identified (Mutate with Reinject),
// keeping its uuid.
func (w *secretWriter) repair(ctx context.Context, meta *metav1.PartialObjectMetadata, id string, ns *corev1.Namespace) error {
	log := w.log.WithValues("namespace", meta.Namespace, "pod", meta.Name, "proxyUUID", id)
	// The cache may lag a Secret written a moment ago (by the admission,
	// another replica), and never holds FSM's (they lack our labels): ask
	// before reading the pod. A Secret of that name that exists leaves
	// nothing to write whatever the pod, so this one metadata read is the
	// whole repair of an FSM-injected pod (two full reads per FSM pod per
	// replica start before); the pod's checks below stand whenever a
	// Secret would be written.
	key := types.NamespacedName{Namespace: meta.Namespace, Name: BootstrapSecretName(id)}
	err := w.h.opts.Client.Get(ctx, key, metadataOf(secretKind))
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading bootstrap Secret %s: %w", key, err)
	}
	pod := &corev1.Pod{}
	if err := w.h.opts.Client.Get(ctx, types.NamespacedName{Namespace: meta.Namespace, Name: meta.Name}, pod); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("reading pod %s/%s: %w", meta.Namespace, meta.Name, err))
	}
	if pod.UID != meta.UID || pod.DeletionTimestamp != nil || isFinished(pod.Status.Phase) || existingUUID(pod) != id {
		// Another pod of that name, going, finished (the cleanup deleted
		// its Secret: its containers never start again), or not mounting
		// this Secret (FSM's node-level interception labels pods without
		// one).
		return nil
	}
	settings, err := w.h.opts.MeshConfig.Settings(ctx)
	if err != nil {
		return fmt.Errorf("reading MeshConfig: %w", err)
	}
	mut, err := Mutate(MutateInput{Pod: pod, Namespace: ns, Settings: settings, Mesh: w.h.mesh, ProxyUUID: id, Reinject: true})
	if err != nil {
		// The pod's annotations no longer pass (edited since), or it was
		// meshed by FSM's injector with what ours denies (a ServiceAccount
		// name with a dot); nothing a retry changes. The kubelet keeps
		// reporting the missing Secret.
		log.Error(err, "cannot rebuild the bootstrap Secret of an injected pod")
		return nil
	}
	if !mut.NeedsSecret {
		return nil
	}
	log.Info("writing a missing bootstrap Secret")
	_, err = w.write(ctx, pod.Namespace, pendingSecret{proxyUUID: id, commonName: mut.CommonName, keyAlg: mut.KeyAlgorithm, boot: mut.Bootstrap}, writtenByRepair)
	return err
}

// write issues the certificate and creates the Secret (or creates the one
// an admission built); one that exists already (another replica, the
// admission, a create the admission gave up waiting for) is success, and no
// write of this one (countFound): created says which.
func (w *secretWriter) write(ctx context.Context, namespace string, e pendingSecret, by string) (created bool, err error) {
	key := types.NamespacedName{Namespace: namespace, Name: BootstrapSecretName(e.proxyUUID)}
	secret := e.built
	if secret == nil && w.late(e) {
		// Another replica's repair may have written it by now (the cache
		// may not show it yet): ask before signing a certificate its create
		// would discard. Only a record this late pays the read.
		err := w.h.opts.Client.Get(ctx, key, metadataOf(secretKind))
		if err == nil {
			return false, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("reading bootstrap Secret %s: %w", key, err)
		}
	}
	if secret == nil {
		cert, err := w.h.opts.Issuer.Issue(ctx, certRequest(e.commonName, e.keyAlg, w.h.opts.BootstrapCertValidity))
		if err != nil {
			return false, fmt.Errorf("issuing bootstrap certificate for %s: %w", e.commonName, err)
		}
		if secret, err = BootstrapSecret(namespace, w.h.mesh.Name, e.proxyUUID, cert, e.boot); err != nil {
			return false, err
		}
	} else {
		// The store's copy stays as recorded if this create fails.
		secret = secret.DeepCopy()
	}
	start := time.Now()
	err = w.h.opts.Client.Create(ctx, secret)
	handlerSecretWrite.Observe(time.Since(start).Seconds())
	if apierrors.IsAlreadyExists(err) {
		return false, w.countFound(ctx, key, e, by)
	}
	if err != nil {
		return false, fmt.Errorf("creating bootstrap Secret %s/%s: %w", namespace, secret.Name, err)
	}
	secretsWritten.WithLabelValues(by).Inc()
	return true, nil
}

// late says whether e's record is old enough for another replica's repair to
// have written its Secret: a repair runs at the earliest RepairDelay after
// that replica's informer saw the pod stored, which is after the admission
// recorded e (every replica runs the same delay: serve's is
// DefaultRepairDelay, not a flag). A record of a repair (no admission) is
// never late: it has just asked the API server.
func (w *secretWriter) late(e pendingSecret) bool {
	return !e.admitted.IsZero() && w.now().Sub(e.admitted) >= w.repairDelay
}

// countFound counts the Secret at key, found written when by was to write
// e's with a certificate already signed (the create answered
// AlreadyExists, or the cache shows it): as the admission's when it is the
// one the admission built and abandoned the create of (that create landed),
// else as found written by another writer, by's certificate discarded. The
// Secret itself was counted by whoever created it. A record younger than a
// repair can be (late) needs no read: nobody else writes a Secret of the
// admission's fresh uuid. Otherwise the certificate tells: each is signed
// once, with its own key. A root rotation re-issuing it meanwhile (the trust
// controller rewrites the certificate, key and CA; nothing else in the
// Secret tells the admission's create from another replica's repair, which
// rebuilds the same labels and bootstrap document) is told by the
// apiserver's own clock instead: a repair creates the Secret at the earliest
// repairDelay (every replica's) after the pod was stored, so one created
// earlier is the admission's. Both timestamps are whole seconds, hence the
// delay truncated; a pod this writer never saw (the shutdown flush) leaves
// only the certificate, as does an abandoned create the apiserver held
// longer than that.
func (w *secretWriter) countFound(ctx context.Context, key types.NamespacedName, e pendingSecret, by string) error {
	if e.built == nil {
		secretsFound.WithLabelValues(by).Inc()
		return nil
	}
	if !w.late(e) {
		countAbandonedCreateLanded()
		return nil
	}
	s := &corev1.Secret{}
	if err := w.h.opts.Client.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // gone again (deleted by hand): nobody's write to count
		}
		return fmt.Errorf("reading bootstrap Secret %s: %w", key, err)
	}
	if bytes.Equal(s.Data[RepoCertKey], e.built.Data[RepoCertKey]) || w.beforeAnyRepair(s, e) {
		countAbandonedCreateLanded()
		return nil
	}
	secretsFound.WithLabelValues(by).Inc()
	return nil
}

// beforeAnyRepair: s was created before a repair of e's pod could create it
// (countFound).
func (w *secretWriter) beforeAnyRepair(s *corev1.Secret, e pendingSecret) bool {
	if e.podCreated.IsZero() || s.CreationTimestamp.IsZero() {
		return false
	}
	return s.CreationTimestamp.Time.Before(e.podCreated.Add(w.repairDelay.Truncate(time.Second)))
}
