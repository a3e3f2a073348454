package injector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// DefaultTimeout bounds one admission; it stays below the webhook
// configuration's timeoutSeconds (20 s) so the user sees our error, not the
// apiserver's timeout. A shorter timeoutSeconds shortens it too
// (reviewhttp.AnswerBudget, from the apiserver's ?timeout=).
const DefaultTimeout = 15 * time.Second

// MeshConfigSource yields the current injector settings. Implementations read
// an informer cache, never the API server, and are safe for concurrent use.
type MeshConfigSource interface {
	Settings(ctx context.Context) (Settings, error)
}

// StaticSettings is a MeshConfigSource that always returns itself.
type StaticSettings Settings

// Settings implements MeshConfigSource.
func (s StaticSettings) Settings(context.Context) (Settings, error) { return Settings(s), nil }

// EventRecorder is the subset of k8s.io/client-go/tools/events.EventRecorder
// the handler uses (controller-runtime's manager.GetEventRecorder provides it).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// Options configure the Handler.
type Options struct {
	// Client creates bootstrap Secrets (and reads one when a copy of an
	// injected pod arrives, and a namespace Namespaces does not have yet).
	// Use a direct client: a cached one would cache every Secret of the
	// cluster.
	Client client.Client
	// Pods reads stored pods' metadata by proxy uuid: the manager's cache
	// with SetupSecretController's index. A pod that arrives injected while
	// a stored pod carries its uuid is a copy (its bootstrap Secret owned by
	// no pod, as this injector writes it, cannot say so) and gets its own
	// identity. Nil: the Secret alone tells a copy from a reinvocation.
	Pods client.Reader
	// Namespaces reads Namespace objects; use an informer-backed reader.
	Namespaces client.Reader
	// Services reads FSM's controller Service (ControllerServiceName in
	// FSMNamespace), only while the MeshConfig enables
	// spec.sidecar.localDNSProxy; use an informer-backed reader restricted
	// to that Service (ControllerServiceCacheByObject). Defaults to
	// Namespaces.
	Services client.Reader
	// Limits yields the namespace's LimitRanges and ResourceQuotas, which
	// the containers the injector adds are checked against before anything
	// is written (checkNamespaceLimits): use CachedLimits. Nil: no check.
	Limits LimitsSource
	// MeshConfig yields the settings; nil means DefaultSettings.
	MeshConfig MeshConfigSource
	// Issuer issues bootstrap certificates from the mesh CA.
	Issuer certs.Issuer

	MeshName      string
	FSMNamespace  string
	TrustDomain   string // default cluster.local
	ClusterDomain string // default cluster.local

	// Default images (flags / env FSM_DEFAULT_SIDECAR_IMAGE,
	// FSM_DEFAULT_INIT_CONTAINER_IMAGE, FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE);
	// empty means FSM v1.5.1's (DefaultSidecarImage, DefaultInitImage,
	// DefaultHealthcheckImage).
	SidecarImage     string
	InitImage        string
	HealthcheckImage string
	// ContainerPullPolicy is the imagePullPolicy of fsm-init and
	// fsm-healthcheck (FSM's --fsm-container-pull-policy); empty leaves it to
	// the apiserver's default. The sidecar's is always IfNotPresent, as FSM's.
	ContainerPullPolicy corev1.PullPolicy
	// BootstrapKeyAlgorithm: empty means DefaultBootstrapKeyAlgorithm,
	// BootstrapKeyFromMeshConfig means FSM's choice (certKeyBitSize).
	BootstrapKeyAlgorithm certs.KeyAlgorithm
	// KubeVersion is the apiserver's /version gitVersion (serve reads it at
	// start); "" is unknown. Native mode (SidecarNativeAnnotation) is
	// refused on one older than 1.29, which would drop restartPolicy.
	KubeVersion string

	// NamespaceLimit bounds certificate issuance and bootstrap Secret
	// writes per namespace; the zero value is no limit.
	NamespaceLimit NamespaceLimit
	// MaxInFlight bounds the admissions handled at once; one more waits up
	// to a second for a slot, then is refused with 429 and Retry-After
	// (client-go retries it), so an apiserver that cannot keep up is not
	// answered by a queue that grows without bound (memory, and latency
	// past the webhook timeout). 0 is no bound.
	MaxInFlight int
	// BootstrapCertValidity defaults to DefaultBootstrapCertValidity.
	BootstrapCertValidity time.Duration
	// Pending is what the writer controller (SetupSecretWriter, sharing
	// it) writes bootstrap Secrets from once their pod is stored. Nil: the
	// admission writes every Secret before the pod is stored.
	Pending *PendingSecrets
	// SecretWriter, with Pending set: SecretWriterController records every
	// Secret and writes none; SecretWriterAdmission (the default) writes it
	// in the admission within Handoff's bounds and records it beyond them.
	SecretWriter SecretWriter
	// Handoff bounds the admission writer; the zero value is the defaults.
	Handoff SecretHandoff
	// Timeout per admission; defaults to DefaultTimeout.
	Timeout time.Duration

	Logger logr.Logger
	// Recorder, when set, receives a Warning event on the pod's owner (or
	// namespace) when a pod is refused for a reason the user must fix.
	Recorder EventRecorder
	// NewUUID generates proxy uuids; defaults to random v4 uuids. Tests
	// inject a deterministic one.
	NewUUID func() string
}

// Handler is the injector's admission handler: pod creates, and FSM's
// VirtualMachine creates (handleVirtualMachine).
type Handler struct {
	opts    Options
	mesh    Mesh
	log     logr.Logger
	limiter *namespaceLimiter
	// inFlight holds a token per admission being handled (MaxInFlight).
	inFlight chan struct{}
	// queueWait is maxQueueWait; a test lengthens it past its own stalls.
	queueWait time.Duration
	// inline holds a token per Secret create an admission waits for
	// (Handoff.InFlight); nil: no hand-off.
	inline chan struct{}
}

var _ admission.Handler = (*Handler)(nil)

// NewHandler checks opts and returns a Handler.
func NewHandler(opts Options) (*Handler, error) {
	var missing []string
	if opts.Client == nil {
		missing = append(missing, "Client")
	}
	if opts.Namespaces == nil {
		missing = append(missing, "Namespaces")
	}
	if opts.Issuer == nil {
		missing = append(missing, "Issuer")
	}
	if opts.MeshName == "" {
		missing = append(missing, "MeshName")
	}
	if opts.FSMNamespace == "" {
		missing = append(missing, "FSMNamespace")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("injector: options not set: %v", missing)
	}
	if opts.BootstrapCertValidity < 0 {
		return nil, fmt.Errorf("injector: BootstrapCertValidity %s must be positive", opts.BootstrapCertValidity)
	}
	if opts.BootstrapCertValidity == 0 {
		opts.BootstrapCertValidity = DefaultBootstrapCertValidity
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = defaultTrustDomain
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = defaultClusterDomain
	}
	if opts.MeshConfig == nil {
		// Checked once here rather than by Mutate on every admission.
		def, err := DefaultSettings().Checked()
		if err != nil {
			return nil, fmt.Errorf("injector: default settings: %w", err)
		}
		opts.MeshConfig = StaticSettings(def)
	}
	if opts.Services == nil {
		opts.Services = opts.Namespaces
	}
	for _, img := range []struct {
		v   *string
		def string
	}{
		{&opts.SidecarImage, DefaultSidecarImage},
		{&opts.InitImage, DefaultInitImage},
		{&opts.HealthcheckImage, DefaultHealthcheckImage},
	} {
		if *img.v == "" {
			*img.v = img.def
		}
	}
	if opts.NewUUID == nil {
		opts.NewUUID = func() string { return uuid.NewString() }
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	limiter, err := newNamespaceLimiter(opts.NamespaceLimit)
	if err != nil {
		return nil, err
	}
	if _, err := BootstrapKeyAlgorithm(opts.BootstrapKeyAlgorithm, 0); err != nil {
		return nil, fmt.Errorf("injector: Options.BootstrapKeyAlgorithm: %w", err)
	}
	if opts.MaxInFlight < 0 {
		return nil, fmt.Errorf("injector: Options.MaxInFlight %d: must be 0 (no bound) or more", opts.MaxInFlight)
	}
	var inFlight chan struct{}
	if opts.MaxInFlight > 0 {
		inFlight = make(chan struct{}, opts.MaxInFlight)
	}
	if opts.SecretWriter == "" {
		opts.SecretWriter = SecretWriterAdmission
	}
	if err := opts.SecretWriter.Validate(); err != nil {
		return nil, fmt.Errorf("injector: Options.SecretWriter %q: %w", opts.SecretWriter, err)
	}
	if opts.Handoff, err = opts.Handoff.withDefaults(); err != nil {
		return nil, fmt.Errorf("injector: Options.Handoff: %w", err)
	}
	var inline chan struct{}
	if opts.Pending != nil && opts.SecretWriter == SecretWriterAdmission {
		inline = make(chan struct{}, opts.Handoff.InFlight)
	}
	return &Handler{
		opts:      opts,
		limiter:   limiter,
		inFlight:  inFlight,
		queueWait: maxQueueWait,
		inline:    inline,
		log:       opts.Logger.WithName("injector"),
		mesh: Mesh{
			Name:             opts.MeshName,
			FSMNamespace:     opts.FSMNamespace,
			TrustDomain:      opts.TrustDomain,
			ClusterDomain:    opts.ClusterDomain,
			SidecarImage:     opts.SidecarImage,
			InitImage:        opts.InitImage,
			HealthcheckImage: opts.HealthcheckImage,

			ContainerPullPolicy:   opts.ContainerPullPolicy,
			BootstrapKeyAlgorithm: opts.BootstrapKeyAlgorithm,
			KubeVersion:           opts.KubeVersion,
		},
	}, nil
}

// Handle implements admission.Handler. Serve it with reviewhttp.NewAdmission:
// controller-runtime's Webhook.Handle recovers a panic and echoes the uid,
// and the shared request path counts the result.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	if h.inFlight != nil {
		release, ok := h.acquire(ctx)
		if !ok {
			overloaded.Inc()
			return overloadedResponse(cap(h.inFlight))
		}
		defer release()
	}
	start := time.Now()
	var secretWrite time.Duration
	resp := h.handle(ctx, req, &secretWrite)
	if resp.Result != nil && resp.Result.Reason == metav1.StatusReasonBadRequest {
		// Counted as result "error" (the admission error alert), and logged
		// nowhere else: the 5xx answers are logged where they fail.
		h.log.Error(errors.New(resp.Result.Message), "admission request the injector cannot act on",
			"kind", req.Kind.String(), "namespace", req.Namespace, "name", req.Name, "uid", req.UID)
	}
	handlerWork.Observe((time.Since(start) - secretWrite).Seconds())
	if secretWrite > 0 {
		handlerSecretWrite.Observe(secretWrite.Seconds())
	}
	return resp
}

// maxQueueWait is how long an admission waits for one of MaxInFlight
// slots before it is refused. Refusing at once made every admission over the
// bound a client retry a second later: at 300 pods/s offered on the 2-core
// machine the retries outnumbered new pods and throughput fell from 70 to 21
// pods/s; a short wait absorbs bursts, and the bound still caps memory.
const maxQueueWait = time.Second

// acquire takes an in-flight slot, waiting at most queueWait.
func (h *Handler) acquire(ctx context.Context) (release func(), ok bool) {
	select {
	case h.inFlight <- struct{}{}:
		return func() { <-h.inFlight }, true
	default:
	}
	t := time.NewTimer(h.queueWait)
	defer t.Stop()
	select {
	case h.inFlight <- struct{}{}:
		return func() { <-h.inFlight }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// The handler's time in two parts: what it costs by itself, and its one
// API write, which the apiserver's load decides. The request histogram
// (reviewhttp) is their sum plus decoding and encoding.
var (
	handlerWork = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fsm_webhooks_injector_work_duration_seconds",
		Help:    "Time the injector's handler spends on an admission, its bootstrap Secret's API write excluded (decision, certificate, patch).",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1, 5},
	})
	handlerSecretWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fsm_webhooks_injector_secret_write_duration_seconds",
		Help:    "Time of the injector's bootstrap Secret create request to the API server, per admission that writes one.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
	})
)

func init() { metrics.Registry.MustRegister(handlerWork, handlerSecretWrite) }

var podGVK = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// handle dispatches on the request's kind, which the configuration's rules
// (matchPolicy Exact) decide: pods, and FSM's VirtualMachines as FSM's
// injector admits them.
func (h *Handler) handle(ctx context.Context, req admission.Request, secretWrite *time.Duration) admission.Response {
	isPod := req.Kind == podGVK
	if !isPod && req.Kind != VirtualMachineGVK {
		return reviewhttp.BadRequest(fmt.Errorf("expected a v1 Pod or a %s/%s %s, got %q",
			VirtualMachineGroup, VirtualMachineVersion, VirtualMachineKind, req.Kind.String()))
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("injection happens on CREATE only")
	}
	if !isPod {
		return h.handleVirtualMachine(ctx, req)
	}
	if len(req.Object.Raw) == 0 {
		return reviewhttp.BadRequest(errors.New("admission request has no pod object"))
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return reviewhttp.BadRequest(fmt.Errorf("decoding pod: %w", err))
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	if nsName == "" {
		return reviewhttp.BadRequest(errors.New("admission request names no namespace"))
	}
	log := reqLog{base: h.log, namespace: nsName, kind: "pod", name: podName(pod), uid: req.UID}

	ns, dec, err := h.decideIn(ctx, log, nsName, func(ns *corev1.Namespace) Decision {
		return Decide(DecideInput{Pod: pod, Namespace: ns, MeshName: h.mesh.Name, FSMNamespace: h.mesh.FSMNamespace})
	})
	if err != nil {
		log.Error(err, "reading namespace")
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading namespace %s: %w", nsName, err))
	}
	if dec.Err != nil {
		return h.refuse(req, log.logger(), "pod", podName(pod), pod.OwnerReferences, ns, dec.Err)
	}
	if !dec.Inject {
		log.V(1).Info("not injecting", "reason", string(dec.Skip))
		return admission.Allowed("")
	}
	dryRun := isDryRun(req)
	if dec.Reinject && dec.ExistingUUID != "" {
		again, err := h.injectedInThisAdmission(ctx, nsName, dec.ExistingUUID, pod.Spec.ServiceAccountName, dryRun)
		if err != nil {
			log.Error(err, "reading existing bootstrap Secret")
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if again {
			log.V(1).Info("not injecting", "reason", string(SkipAlreadyInjected))
			return admission.Allowed("")
		}
	}

	settings, err := h.opts.MeshConfig.Settings(ctx)
	if err != nil {
		log.Error(err, "reading MeshConfig")
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading MeshConfig: %w", err))
	}
	var controllerSvc *corev1.Service
	if settings.LocalDNSProxy && !dec.Reinject {
		if controllerSvc, err = h.controllerService(ctx); err != nil {
			log.Error(err, "reading the controller Service")
			return admission.Errored(http.StatusInternalServerError, err)
		}
	}
	var limits NamespaceLimits
	if h.opts.Limits != nil && !dec.Reinject {
		// Not known (not synced, not allowed): injected unchecked.
		if l, ok := h.opts.Limits.NamespaceLimits(ctx, nsName); ok {
			limits = l
		}
	}
	proxyUUID := h.opts.NewUUID()
	mut, err := Mutate(MutateInput{Pod: pod, Namespace: ns, Settings: settings, Mesh: h.mesh, ProxyUUID: proxyUUID,
		ControllerService: controllerSvc, Reinject: dec.Reinject, Limits: limits})
	if err != nil {
		return h.refuse(req, log.logger(), "pod", podName(pod), pod.OwnerReferences, ns, err)
	}
	ops, err := CreatePatch(pod, mut.Pod)
	if err != nil {
		log.Error(err, "building patch")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if mut.NeedsSecret && !dryRun {
		if resp, over := h.overLimit(log, nsName); over {
			return resp
		}
		if err := h.placeSecret(ctx, nsName, proxyUUID, mut, secretWrite); err != nil {
			if quotaExceeded(err) {
				return h.refuse(req, log.logger(), "pod", podName(pod), pod.OwnerReferences, ns,
					fmt.Errorf("%w: each meshed pod needs a bootstrap Secret in its namespace; raise the ResourceQuota's Secret count or delete Secrets no longer used", err))
			}
			log.Error(err, "creating bootstrap Secret", "proxyUUID", proxyUUID)
			return admission.Errored(http.StatusInternalServerError, err)
		}
	}
	log.V(1).Info("injecting", "proxyUUID", proxyUUID, "reinject", dec.Reinject, "dryRun", dryRun, "ops", len(ops))
	resp := patched(ops)
	resp.Warnings = mut.Warnings
	h.warnOwner(pod, ns, mut.Warnings, dryRun)
	return resp
}

// warnOwner tells a pod's controller (a ReplicaSet, a Job, a StatefulSet)
// of the admission's warnings as a Warning Event: the warnings reach only
// the pod's creator, and for most pods that is the controller, so the probe
// that fails for ever or the sidecar that escapes the mesh went unseen.
// One Event per pod; the recorder folds a ReplicaSet's identical ones into a
// series, as the pod's generated name is the same for all of them. A pod
// created directly has no controller: its creator saw the warnings.
func (h *Handler) warnOwner(pod *corev1.Pod, ns *corev1.Namespace, warnings []string, dryRun bool) {
	if len(warnings) == 0 || h.opts.Recorder == nil || dryRun || metav1.GetControllerOfNoCopy(pod) == nil {
		return
	}
	h.opts.Recorder.Eventf(eventTarget(pod.OwnerReferences, ns), nil, corev1.EventTypeWarning, EventSidecarInjectedWithWarnings, "InjectSidecar", "%s",
		truncateNote(fmt.Sprintf("pod %s injected with warnings: %s", podName(pod), strings.Join(warnings, "; "))))
}

// Reasons of the injector's Warning Events on a pod's owner (or namespace).
const (
	// EventSidecarInjectionRefused: a pod refused for a reason the user must fix.
	EventSidecarInjectionRefused = "SidecarInjectionRefused"
	// EventSidecarInjectedWithWarnings: a pod injected with admission warnings.
	EventSidecarInjectedWithWarnings = "SidecarInjectedWithWarnings"
)

// handleVirtualMachine admits a VirtualMachine create as FSM's injector
// does: in a namespace and with annotations that inject a pod, it gets a
// fresh fsm-proxy-uuid label and nothing else (no certificate, no Secret,
// so a dry run needs no special case and no namespace limit applies).
func (h *Handler) handleVirtualMachine(ctx context.Context, req admission.Request) admission.Response {
	if len(req.Object.Raw) == 0 {
		return reviewhttp.BadRequest(errors.New("admission request has no VirtualMachine object"))
	}
	vm, err := DecodeVirtualMachine(req.Object.Raw)
	if err != nil {
		return reviewhttp.BadRequest(fmt.Errorf("decoding VirtualMachine: %w", err))
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = vm.namespace()
	}
	if nsName == "" {
		return reviewhttp.BadRequest(errors.New("admission request names no namespace"))
	}
	log := reqLog{base: h.log, namespace: nsName, kind: "virtualMachine", name: vm.Name(), uid: req.UID}

	ns, dec, err := h.decideIn(ctx, log, nsName, func(ns *corev1.Namespace) Decision {
		return DecideVirtualMachine(DecideVirtualMachineInput{VM: vm, Namespace: ns, MeshName: h.mesh.Name, FSMNamespace: h.mesh.FSMNamespace})
	})
	if err != nil {
		log.Error(err, "reading namespace")
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading namespace %s: %w", nsName, err))
	}
	if dec.Err != nil {
		return h.refuse(req, log.logger(), VirtualMachineKind, vm.Name(), vm.ownerReferences(), ns, dec.Err)
	}
	if !dec.Inject {
		log.V(1).Info("not injecting", "reason", string(dec.Skip))
		return admission.Allowed("")
	}
	proxyUUID := h.opts.NewUUID()
	ops := VirtualMachinePatch(vm, proxyUUID)
	log.V(1).Info("injecting", "proxyUUID", proxyUUID, "dryRun", isDryRun(req), "ops", len(ops))
	return patched(ops)
}

// reqLog is the handler's logger for one admission. It adds the request's
// values only when something is logged: with zap, WithValues encodes them at
// once, and most admissions log nothing.
type reqLog struct {
	base      logr.Logger
	namespace string
	kind      string // the key naming the object: "pod", "virtualMachine"
	name      string
	uid       types.UID
}

func (l reqLog) logger() logr.Logger {
	return l.base.WithValues("namespace", l.namespace, l.kind, l.name, "uid", l.uid)
}

func (l reqLog) Error(err error, msg string, kv ...any) { l.logger().Error(err, msg, kv...) }

// V returns a logger that discards unless level is enabled.
func (l reqLog) V(level int) logr.Logger {
	if !l.base.V(level).Enabled() {
		return logr.Discard()
	}
	return l.logger().V(level)
}

// decideIn reads the admitted object's namespace (namespace) and decides
// with decide. The apiserver calls the webhook only for a namespace its
// namespaceSelector matched (monitored by the mesh, not ignored), so a cached
// namespace deciding otherwise (contradictsSelector) lags a change the
// apiserver has already seen: `fsm namespace add`, which labels and annotates
// the namespace in one patch, and a pod created at once. It is read once from
// the API server and decided again: taken at the cache's word, the pod would
// be admitted without a sidecar and run unmeshed for its lifetime. Only a
// caller that is not the apiserver pays that read for a namespace that is
// really not the mesh's. So is a cached namespace being deleted
// (staleCached): the apiserver admits no create there, so the namespace the
// object is created in is a new one of the same name, with its own labels
// and annotations.
func (h *Handler) decideIn(ctx context.Context, log reqLog, name string, decide func(*corev1.Namespace) Decision) (*corev1.Namespace, Decision, error) {
	ns, cached, err := h.namespace(ctx, log, name)
	if err != nil {
		return nil, Decision{}, err
	}
	dec := decide(ns)
	if !cached {
		return ns, dec, nil
	}
	why := staleCached(ns, dec.Skip)
	if why == "" {
		return ns, dec, nil
	}
	live, err := h.readStale(ctx, name, why)
	if err != nil {
		return nil, Decision{}, err
	}
	if live == nil {
		return ns, dec, nil // deleted since: nothing to inject
	}
	log.V(1).Info("namespace in the informer cache stale, read from the API server", "cached", why)
	return live, decide(live), nil
}

// readStale reads namespace name from the API server, its cached copy being
// stale (why: staleCached), and counts the read; nil when the API server no
// longer has it. The admission (decideIn) and the bootstrap Secret writer
// (secretWriter.meshExclusion) confirm a cache that contradicts the
// namespaceSelector with it.
func (h *Handler) readStale(ctx context.Context, name, why string) (*corev1.Namespace, error) {
	namespacesReadLive.Inc()
	live := &corev1.Namespace{}
	if err := h.opts.Client.Get(ctx, types.NamespacedName{Name: name}, live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("the informer cache has it %s; from the API server: %w", why, err)
	}
	return live, nil
}

// staleCached says why the cached namespace ns, on which an object decided
// skip, cannot be the one the apiserver admits the object into; "" when it
// can. Either it is outside the webhook's namespaceSelector
// (contradictsSelector), or it is being deleted: NamespaceLifecycle, which
// the apiserver runs before the webhooks, refuses every create in a
// Terminating namespace, so the cache lags the namespace's deletion and
// re-creation under the same name, and holds the old one's labels and
// annotations (deciding injection, the sidecar image, resources, metrics).
func staleCached(ns *corev1.Namespace, skip SkipReason) string {
	switch {
	case contradictsSelector(skip):
		return fmt.Sprintf("outside the webhook's namespaceSelector (%s)", skip)
	case ns.DeletionTimestamp != nil:
		return "being deleted"
	}
	return ""
}

// contradictsSelector: skip is a reason the webhook configuration's
// namespaceSelector (Registration) already rules out.
func contradictsSelector(skip SkipReason) bool {
	return skip == SkipNotMonitored || skip == SkipIgnored
}

// namespace reads the admitted object's namespace from the informer cache
// (cached true). The cache may not have a namespace created a moment before
// its first pod (kubectl apply of both) while the apiserver does (for its
// namespaceSelector it reads the namespace live when its lister misses): a
// cache NotFound is confirmed with one live read, so the common path stays
// cache-only.
func (h *Handler) namespace(ctx context.Context, log reqLog, name string) (ns *corev1.Namespace, cached bool, err error) {
	ns = &corev1.Namespace{}
	key := types.NamespacedName{Name: name}
	err = h.opts.Namespaces.Get(ctx, key, ns)
	if err == nil {
		return ns, true, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, err
	}
	namespacesReadLive.Inc()
	if err := h.opts.Client.Get(ctx, key, ns); err != nil {
		return nil, false, fmt.Errorf("not in the informer cache; from the API server: %w", err)
	}
	log.V(1).Info("namespace not in the informer cache yet, read from the API server")
	return ns, false, nil
}

// namespacesReadLive counts the namespace reads from the API server of
// Handler.namespace and Handler.readStale.
var namespacesReadLive = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "fsm_webhooks_injector_namespace_live_reads_total",
	Help: "Admissions whose namespace the injector's informer cache did not have (created a moment before), or had outside the webhook's namespaceSelector (labelled a moment before) or being deleted (created again since), read from the API server instead; also bootstrap Secrets of pods this replica admitted whose namespace the cache had outside the mesh, confirmed with the API server before the writer reports them waiting for it.",
})

func init() { metrics.Registry.MustRegister(namespacesReadLive) }

// controllerService reads FSM's controller Service; nil when it does not
// exist (Mutate then refuses the pod, naming it).
func (h *Handler) controllerService(ctx context.Context) (*corev1.Service, error) {
	svc := &corev1.Service{}
	key := types.NamespacedName{Namespace: h.mesh.FSMNamespace, Name: ControllerServiceName}
	err := h.opts.Services.Get(ctx, key, svc)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Service %s: %w", key, err)
	}
	return svc, nil
}

// injectedInThisAdmission tells our own reinvocation (the pod is not stored
// yet, and the Secret we just created exists, owned by no pod, naming the
// pod's ServiceAccount) from a copy of an injected pod (a stored pod carries
// the uuid, or the Secret is owned by the source pod, gone, or names another
// identity): a copy must not share the source's identity. A dry run of a
// copy of a stored pod previews the new identity a real create gives it.
func (h *Handler) injectedInThisAdmission(ctx context.Context, namespace, proxyUUID, serviceAccount string, dryRun bool) (bool, error) {
	if h.opts.Pods != nil {
		// The pod being admitted is not stored before its admission ends,
		// so a stored pod with its uuid is another pod: the source.
		source, err := cachedPodWithUUID(ctx, h.opts.Pods, namespace, proxyUUID)
		if err != nil {
			return false, err
		}
		if source != nil {
			return false, nil
		}
	}
	if dryRun {
		// A dry run wrote no Secret to tell its reinvocation by, and writes
		// none: without a stored source, leave the pod as it is.
		return true, nil
	}
	if h.opts.Pending != nil && h.opts.Pending.has(types.NamespacedName{Namespace: namespace, Name: BootstrapSecretName(proxyUUID)}) {
		// Admitted here a moment ago, its Secret not written yet. A
		// reinvocation answered by another replica finds neither and
		// re-identifies the pod: a new uuid, the first one's record expiring
		// unwritten.
		return true, nil
	}
	s := &corev1.Secret{}
	err := h.opts.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: BootstrapSecretName(proxyUUID)}, s)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading bootstrap Secret %s/%s: %w", namespace, BootstrapSecretName(proxyUUID), err)
	}
	if len(s.OwnerReferences) > 0 {
		return false, nil
	}
	if time.Since(s.CreationTimestamp.Time) > DefaultOrphanGracePeriod {
		// Older than any admission lives (34 s, and slack for clock skew):
		// the Secret of a pod deleted since and not cleaned up yet, whose
		// copy (kubectl replace --force) is admitted now. Keeping the uuid
		// would leave the copy that Secret, which the cleanup of the deleted
		// pod then removes.
		return false, nil
	}
	// The Secret of a pod just deleted has no owner either until it is
	// cleaned up; a copy of that pod running as another ServiceAccount must
	// not get its certificate.
	var boot BootstrapConfig
	if json.Unmarshal(s.Data[BootstrapConfigKey], &boot) != nil {
		return false, nil
	}
	if boot.NodeID != CommonName(proxyUUID, serviceAccount, namespace, h.mesh.TrustDomain) {
		return false, nil
	}
	return h.signedByMesh(ctx, s), nil
}

// signedByMesh says whether a root the issuer trusts now signed s's
// certificate, as one this admission issued moments ago is. A Secret
// restored from a backup (Velero resets its metadata: no owner, a new
// creationTimestamp) before a completed root rotation or from another
// cluster is not, and its pod, kept on it, would run on a certificate the
// trust controller never re-issues (PlanTrust). A bundle that cannot be read
// tells nothing, and the pod is left as it is, as before: this path issues
// nothing, and a CA outage must not refuse it.
func (h *Handler) signedByMesh(ctx context.Context, s *corev1.Secret) bool {
	pem, err := h.opts.Issuer.CABundle(ctx)
	if err != nil {
		return true
	}
	bundle, err := certs.ParseBundle(time.Now(), pem)
	if err != nil || bundle.Len() == 0 {
		return true
	}
	chain, err := certs.ParseCertsPEM(s.Data[RepoCertKey])
	if err != nil {
		return false
	}
	for _, root := range bundle.Certificates() {
		if signedBy(chain, root) {
			return true
		}
	}
	return false
}

// placeSecret sees to the pod's bootstrap Secret as Options say: written
// here, recorded for the writer controller, or written here unless the
// apiserver is too slow or busy for it (SecretHandoff). A record the writer
// no longer takes (it stopped; the server drains after the controllers) is
// written here.
func (h *Handler) placeSecret(ctx context.Context, namespace, proxyUUID string, mut *Mutation, write *time.Duration) error {
	p := h.opts.Pending
	switch {
	case p == nil:
		return h.createBootstrapSecret(ctx, namespace, proxyUUID, mut, write)
	case h.opts.SecretWriter == SecretWriterController:
		if p.add(namespace, proxyUUID, mut, nil) {
			return nil
		}
		return h.createBootstrapSecret(ctx, namespace, proxyUUID, mut, write)
	}
	// A slot covers the certificate too: a slow CA (Vault, cert-manager)
	// holds pod creates as a slow apiserver does, and a busy hand-off then
	// leaves the issuing to the controller instead of waiting for it here
	// (issuing first made every admission wait on a loaded Vault, up to
	// --injector-max-in-flight at once, and pod creates timed out).
	select {
	case h.inline <- struct{}{}:
		defer func() { <-h.inline }()
	default:
		// As many Secrets as Handoff.InFlight are already being issued and
		// created: one more would only queue behind them.
		if p.add(namespace, proxyUUID, mut, nil) {
			handoffs.WithLabelValues(handoffBusy).Inc()
			return nil
		}
		return h.createBootstrapSecret(ctx, namespace, proxyUUID, mut, write)
	}
	secret, err := h.buildBootstrapSecret(ctx, namespace, proxyUUID, mut)
	if err != nil {
		return err
	}
	budget := h.opts.Handoff.Budget
	if deadline, ok := ctx.Deadline(); ok {
		budget = handoffBudget(budget, time.Until(deadline))
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	// A copy: the client fills in what it creates, and secret may yet go
	// to the controller as it was built.
	err = h.createBuilt(cctx, secret.DeepCopy(), write)
	if err == nil || ctx.Err() != nil || (cctx.Err() == nil && !clientThrottled(err)) {
		return err
	}
	// Over budget, or sure to be (client-go's rate limiter refuses at once
	// a wait longer than the budget left; that create was never sent): the
	// create may still land, which the controller's own create (of this
	// same Secret: no second certificate) takes as done.
	if p.add(namespace, proxyUUID, mut, secret) {
		handoffs.WithLabelValues(handoffSlow).Inc()
		return nil
	}
	// The uuid is this admission's own: the Secret exists only if the
	// abandoned create landed.
	if err := h.createBuilt(ctx, secret, write); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		countAbandonedCreateLanded()
	}
	return nil
}

// handoffBudget is how long an admission with left of its time waits for
// its Secret create: the configured budget, but at most half of what is
// left, so that a create over it is handed off while the admission can
// still answer. A budget past the admission's deadline (a short
// timeoutSeconds: 1 s leaves the handler 0.75 s; a long
// --injector-secret-handoff-budget; the time a slow CA took) otherwise
// refused the very pod the hand-off is there to admit: a Secret create APF
// held back (workload-low saturated by the creates waiting on the
// injector) failed it with 429 or "context deadline exceeded"
// (TestAPFSaturatedLevelHandsOff).
func handoffBudget(budget, left time.Duration) time.Duration {
	return min(budget, left/2)
}

// quotaExceeded tells the namespace's ResourceQuota refusing the bootstrap
// Secret (its Secret count used up) from the injector failing: the tenant's
// to fix, like any denial, so the pod is refused as a decision (result
// denied, an Event on its owner) instead of a 500 that the
// FSMWebhooksAdmissionErrors alert pages the mesh's operators for and an
// error logged at every retry of the owner. The quota admission plugin says
// so only in its message (k8s.io/apiserver, plugin/resourcequota; a 403 like
// RBAC's, which stays the injector's error);
// TestQuotaLimitRangeAndLaterWebhooks fails if that changes.
func quotaExceeded(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Reason == metav1.StatusReasonForbidden &&
		strings.Contains(status.Status().Message, quotaExceededMessage)
}

const quotaExceededMessage = "is forbidden: exceeded quota: "

// clientThrottled tells client-go's client-side rate limiter refusing a
// request before sending it (its wait would outlast the context's deadline)
// from an answer of the API server. client-go wraps it in this text and
// nothing typed (k8s.io/client-go/rest, Request.tryThrottleWithInfo);
// TestE2E's client-side throttling subtest fails if that changes.
func clientThrottled(err error) bool {
	var status apierrors.APIStatus
	return !errors.As(err, &status) && strings.Contains(err.Error(), clientRateLimiterError)
}

const clientRateLimiterError = "client rate limiter Wait returned an error"

// createBootstrapSecret issues the pod's certificate and writes its Secret;
// the write's duration is added to *write.
func (h *Handler) createBootstrapSecret(ctx context.Context, namespace, proxyUUID string, mut *Mutation, write *time.Duration) error {
	secret, err := h.buildBootstrapSecret(ctx, namespace, proxyUUID, mut)
	if err != nil {
		return err
	}
	return h.createBuilt(ctx, secret, write)
}

// buildBootstrapSecret issues the pod's certificate and builds its Secret.
func (h *Handler) buildBootstrapSecret(ctx context.Context, namespace, proxyUUID string, mut *Mutation) (*corev1.Secret, error) {
	cert, err := h.opts.Issuer.Issue(ctx, certRequest(mut.CommonName, mut.KeyAlgorithm, h.opts.BootstrapCertValidity))
	if err != nil {
		return nil, fmt.Errorf("issuing bootstrap certificate for %s: %w", mut.CommonName, err)
	}
	return BootstrapSecret(namespace, h.mesh.Name, proxyUUID, cert, mut.Bootstrap)
}

// createBuilt creates secret from the admission; the write's duration is
// added to *write.
func (h *Handler) createBuilt(ctx context.Context, secret *corev1.Secret, write *time.Duration) error {
	start := time.Now()
	err := h.opts.Client.Create(ctx, secret)
	*write += time.Since(start)
	if err != nil {
		return fmt.Errorf("creating bootstrap Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	secretsWritten.WithLabelValues(writtenByAdmission).Inc()
	return nil
}

// refuse denies an object (kind "pod" or "VirtualMachine") for a reason the
// user must fix, and tells them on its owner (or the namespace) too: a
// Deployment's pods are created by its ReplicaSet, so the denial is
// otherwise only visible in its events.
func (h *Handler) refuse(req admission.Request, log logr.Logger, kind, name string, owners []metav1.OwnerReference, ns *corev1.Namespace, err error) admission.Response {
	log.V(1).Info("refusing "+kind, "reason", err.Error())
	// A dry run writes nothing (sideEffects NoneOnDryRun), an Event included:
	// the object was never going to be stored.
	if h.opts.Recorder != nil && !isDryRun(req) {
		h.opts.Recorder.Eventf(eventTarget(owners, ns), nil, corev1.EventTypeWarning, EventSidecarInjectionRefused, "InjectSidecar", "%s",
			truncateNote(fmt.Sprintf("%s %s refused by the sidecar injector: %s", kind, name, err.Error())))
	}
	return reviewhttp.Denied(err.Error())
}

func isDryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

func eventTarget(owners []metav1.OwnerReference, ns *corev1.Namespace) runtime.Object {
	for _, ref := range owners {
		if ref.Controller != nil && *ref.Controller {
			return &corev1.ObjectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Namespace: ns.Name}
		}
	}
	// Namespaced so the event shows up with the namespace's other events.
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns.Name, UID: ns.UID, Namespace: ns.Name}
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName
}
