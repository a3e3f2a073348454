package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/tools/cache"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// hook runs one webhook: its listener, its cert Source, the informer on its
// registration object and the loop that reconciles both.
type hook struct {
	s     *Server
	w     Webhook
	spec  servingcert.Spec
	ep    Endpoint
	log   logr.Logger
	src   *servingcert.Source
	store *servingcert.Store
	obj   cache.SharedIndexInformer
	// routes watches the converter Service's EndpointSlices when the
	// stanza waits for the Service to route here (conversionroute.go).
	routes cache.SharedIndexInformer

	trigger chan struct{}

	mu sync.Mutex
	// apiBundle is the caBundle last seen in the API and since when.
	apiBundle      []byte
	apiBundleSince time.Time
	// handshakeProof and probeProof are the background checks' last
	// results (readiness.go); proveNow and probeNow run them at once.
	handshakeProof, probeProof proof
	proveNow, probeNow         chan struct{}
	// owner says whether this process owns the CRD's conversion stanza
	// (CRDConversion only; conversionlease.go).
	owner conversionOwner
	// takeover is set when this process newly owns the stanza, until it
	// targets this converter (mustRepoint).
	takeover atomic.Bool
	// repairBackoff grows while someone keeps reverting our caBundle.
	repairBackoff time.Duration
	lastRepair    time.Time
	// missingLogged keeps a missing registration object to one log line;
	// emptyNoted keeps a configuration with no webhooks to one log line and
	// one Event each time it is emptied.
	missingLogged bool
	emptyNoted    bool
	// routeWait is why the conversion stanza is held back (nil: it is not);
	// listedSince is since when the Service lists this pod as ready.
	routeWait   error
	listedSince time.Time
	// routesChanged: the EndpointSlices changed since the loop last
	// looked (it then retries a waiting stanza soon).
	routesChanged atomic.Bool
	// serviceAddr is where the apiserver reaches the Service
	// (serviceClusterAddr; tests point it elsewhere).
	serviceAddr func(context.Context) (string, error)
	// written is the registration object as this hook last wrote it, at
	// writtenAt. The informer delivers that write later: a pass in between
	// must not read the older cached version, or it writes again from it
	// (a conflict with its own write) and takes the caBundle it just
	// replaced as the one still in the API.
	written   metav1.Object
	writtenAt time.Time
	// held decides how long a serving cert another writer stored is kept
	// (foreigncert.go). The loop's alone.
	held certHold
	// kept are the roots of the serving certs this hook replaced, kept in
	// its caBundle for replacedRootKeep (foreigncert.go). The loop's alone.
	kept keptRoots
	// published is the desired caBundle last found in the registration
	// object or written to it (nil: none yet, or the object is not ours to
	// write). Writing that same bundle again reverts a change, which backs
	// off (isRevert); it repairs one only if someone other than our servers
	// made it (isRepair, by the caBundle's field manager). The loop's alone.
	published []byte
}

func newHook(s *Server, w Webhook) *hook {
	log := s.opts.Log.WithValues("webhook", w.Name)
	h := &hook{
		s:       s,
		w:       w,
		spec:    w.ServingSpec(s.opts),
		ep:      w.endpoint(s.opts),
		log:     log,
		trigger: make(chan struct{}, 1),

		proveNow: make(chan struct{}, 1),
		probeNow: make(chan struct{}, 1),
	}
	// The repair counter starts at 0: increase() over a series that
	// appears with its first repair misses that repair.
	caBundleRepairs.WithLabelValues(w.Name, w.Registration.Kind.String())
	h.src = servingcert.NewSource(s.client, s.opts.Namespace, w.SecretName, log)
	h.src.OnChange(func(*servingcert.Loaded) { h.kick() })
	h.store = &servingcert.Store{Client: s.client, Issuer: s.opts.Issuer, Log: log, RenewFraction: s.opts.RenewFraction}
	byName := fields.OneTermEqualSelector("metadata.name", w.Registration.Name)
	var lw *cache.ListWatch
	var example runtime.Object
	switch w.Registration.Kind {
	case MutatingConfiguration:
		lw = cache.NewListWatchFromClient(s.client.AdmissionregistrationV1().RESTClient(), "mutatingwebhookconfigurations", "", byName)
		example = &admv1.MutatingWebhookConfiguration{}
	case ValidatingConfiguration:
		lw = cache.NewListWatchFromClient(s.client.AdmissionregistrationV1().RESTClient(), "validatingwebhookconfigurations", "", byName)
		example = &admv1.ValidatingWebhookConfiguration{}
	default:
		lw = cache.NewListWatchFromClient(s.apiext.ApiextensionsV1().RESTClient(), "customresourcedefinitions", "", byName)
		example = &apiextv1.CustomResourceDefinition{}
	}
	h.obj = cache.NewSharedIndexInformer(lw, example, 0, cache.Indexers{})
	_, _ = h.obj.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { h.kick() },
		UpdateFunc: func(any, any) { h.kick() },
		DeleteFunc: func(any) { h.kick() },
	})
	h.serviceAddr = h.serviceClusterAddr
	if h.routes = newRouteInformer(s, w); h.routes != nil {
		changed := func() { h.routesChanged.Store(true); h.kick() }
		_, _ = h.routes.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { changed() },
			UpdateFunc: func(any, any) { changed() },
			DeleteFunc: func(any) { changed() },
		})
	}
	return h
}

func (h *hook) kick() {
	select {
	case h.trigger <- struct{}{}:
	default:
	}
	h.kickProofs()
}

func (h *hook) start(ctx context.Context, g *errgroup.Group) {
	h.s.serveWebhook(ctx, g, h.w, h.src.GetCertificate, h.log)
	g.Go(func() error { h.src.Run(ctx); return nil })
	g.Go(func() error { h.obj.Run(ctx.Done()); return nil })
	synced := []cache.InformerSynced{h.src.HasSynced, h.obj.HasSynced}
	if h.routes != nil {
		g.Go(func() error { h.routes.Run(ctx.Done()); return nil })
		synced = append(synced, h.routes.HasSynced)
	}
	if h.w.Registration.Kind == CRDConversion {
		g.Go(func() error { return h.runConversionLease(ctx, h.kick) })
	}
	g.Go(func() error {
		if !cache.WaitForCacheSync(ctx.Done(), synced...) {
			return nil
		}
		h.loop(ctx)
		return nil
	})
	g.Go(func() error {
		if !cache.WaitForCacheSync(ctx.Done(), h.src.HasSynced, h.obj.HasSynced) {
			return nil
		}
		h.runProofs(ctx)
		return nil
	})
}

func (h *hook) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.trigger:
		case <-timer.C:
		}
		next, err := h.reconcile(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(100*time.Millisecond, backoff*2), 10*time.Second)
			if errors.Is(err, servingcert.ErrNoCert) {
				// Normal at start: the informer has not delivered the
				// Secret this very loop just wrote.
				h.log.V(1).Info("waiting for the serving cert to load before registering", "retryIn", backoff)
			} else if errors.Is(err, errRouteWait) {
				// A state, not a failure: checked again at least every
				// resync, and soon after the EndpointSlices changed (once
				// they list this pod, kube-proxy follows within a second
				// or so); logged once per reason by noteRouteWait.
				if h.routesChanged.Swap(false) {
					backoff = 100 * time.Millisecond
				}
				backoff = min(backoff, h.s.opts.ResyncInterval)
				h.log.V(1).Info("the conversion stanza waits for the Service", "reason", err.Error(), "retryIn", backoff)
			} else if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				// Optimistic concurrency doing its job: another replica
				// or a user wrote first, and the next pass works from
				// their version. Not a failure anyone has to act on.
				h.log.Info("another writer changed the object under this write; retrying from the newer version", "reason", err.Error(), "retryIn", backoff)
			} else {
				h.log.Error(err, "reconciling webhook serving cert and registration", "retryIn", backoff)
			}
			next = backoff
		} else {
			backoff = 0
		}
		timer.Reset(next)
	}
}

// reconcile brings the caBundle and the serving cert in line with the mesh
// CA bundle. Order matters for zero downtime: a new root goes into the
// caBundle first and a cert from it is written only once that caBundle has
// been in the API for SettleDelay.
func (h *hook) reconcile(ctx context.Context) (time.Duration, error) {
	opts := h.s.opts
	now := time.Now()
	trusted, err := opts.Issuer.CABundle(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the %s CA bundle: %w", opts.Issuer.Provider(), err)
	}
	if _, err := certs.ParseCertsPEM(trusted); err != nil {
		return 0, fmt.Errorf("the %s CA bundle: %w", opts.Issuer.Provider(), err)
	}
	// Sync, not Current: "nothing is served" below must not be read off a
	// Source whose handler has not yet loaded the Secret other replicas
	// serve, or a cert from a root the apiserver does not trust yet would be
	// written without waiting for the caBundle to settle.
	served := h.src.Sync()
	sec := h.src.Secret()
	kept, keptFor := h.kept.at(now)
	desired, err := h.desiredBundle(now, trusted, served, sec, kept)
	if err != nil {
		return 0, err
	}

	// A registration error must not stop the cert from being written: on
	// first start there is nothing to register until a cert is served.
	apiBundle, present, regErr := h.syncRegistration(ctx, desired)
	h.mu.Lock()
	if !bytes.Equal(apiBundle, h.apiBundle) || h.apiBundleSince.IsZero() {
		h.apiBundle, h.apiBundleSince = apiBundle, now
	}
	settledFor := now.Sub(h.apiBundleSince)
	h.mu.Unlock()

	next := opts.ResyncInterval
	if keptFor > 0 {
		// A kept root leaves the caBundle on time, not a resync later.
		next = min(next, keptFor)
	}
	var v servingcert.Verdict
	if sec == nil {
		v = servingcert.Verdict{Reason: servingcert.ReasonMissing}
	} else {
		v = servingcert.Check(h.spec, sec.Data, trusted, now, opts.RenewFraction)
	}
	if !v.OK() {
		if sec != nil {
			apiVerifies := present && apiVerifiesStored(apiBundle, sec.Data, h.spec, now)
			if hold := h.held.wait(v, sec.Data[servingcert.KeyCert], apiVerifies, foreignCertHold*opts.SettleDelay, now); hold > 0 {
				h.log.V(1).Info("keeping a serving cert another writer stored that this replica's CA does not verify but the caBundle does",
					"reason", string(v.Reason), "detail", v.Detail, "replaceIn", hold)
				return max(min(hold, next), 50*time.Millisecond), regErr
			}
		}
		// Nobody can be hurt by a cert from a root the apiserver does not
		// trust yet if nothing is served or nothing calls us.
		settled := bytes.Equal(apiBundle, desired) && settledFor >= opts.SettleDelay
		if served == nil || !present || settled {
			out, err := h.store.Ensure(ctx, h.spec, trusted)
			if err != nil {
				return 0, err
			}
			if out.Written {
				renewals.WithLabelValues(h.w.Name, string(out.Reason)).Inc()
				h.held.wrote(out.Secret.Data[servingcert.KeyCert])
				// Another writer may still store certs of the root this one
				// replaced: it stays verifiable for a while.
				h.kept.keep(replacedRoots(out.Replaced, served, now), time.Now().Add(replacedRootKeep*opts.SettleDelay))
			}
			// Served now, not when this replica's watch delivers it.
			h.src.Offer(out.Secret)
			return opts.ResyncInterval, regErr
		}
		return max(opts.SettleDelay-settledFor, 50*time.Millisecond), regErr
	}
	if regErr != nil {
		return 0, regErr
	}
	if until := time.Until(v.RenewAt); until < next {
		// A little jitter keeps replicas from renewing in the same
		// millisecond; the resourceVersion guard settles any overlap.
		next = until + rand.N(time.Second)
	}
	return max(next, 50*time.Millisecond), nil
}

// desiredBundle is the caBundle to publish: every root the mesh trusts plus
// the root(s) of the cert being served and of the cert stored (which may be
// about to be served), so that a CA swap never strands a served cert, and
// kept: the roots of certs this hook replaced lately, which another writer
// may still store (replacedRootKeep).
func (h *hook) desiredBundle(now time.Time, trusted []byte, served *servingcert.Loaded, sec *corev1.Secret, kept []byte) ([]byte, error) {
	inputs := [][]byte{trusted}
	if len(kept) > 0 {
		inputs = append(inputs, kept)
	}
	if served != nil {
		inputs = append(inputs, served.CA)
	}
	if sec != nil {
		if ca := sec.Data[servingcert.KeyCA]; len(ca) > 0 {
			if _, err := certs.ParseCertsPEM(ca); err == nil {
				inputs = append(inputs, ca)
			}
		}
	}
	b, err := servingcert.MergeBundles(now, inputs...)
	if err != nil {
		return nil, fmt.Errorf("building the caBundle: %w", err)
	}
	return b, nil
}

// registration is the registration object from the informer's cache, or the
// version this hook last wrote when the cache has not caught up with it.
func (h *hook) registration() (any, bool, error) {
	obj, exists, err := h.obj.GetStore().GetByKey(h.w.Registration.Name)
	if err != nil || !exists {
		return obj, exists, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.writtenAt) > ownWriteTrust {
		return obj, true, nil
	}
	return fresher(obj, h.written), true, nil
}

// ownWriteTrust bounds how long the hook's own write outranks the informer:
// far longer than a watch lags, and short enough that after an etcd restore
// (resource versions go back, so the restored object looks older than the
// write) the restored object is what the hook repairs.
const ownWriteTrust = 30 * time.Second

// fresher returns written when it is a later version of the cached object
// (same UID, higher resource version), else cached. A deleted and recreated
// object has another UID: what this hook wrote to the old one says nothing
// of it. Versions that do not compare leave the informer's word.
func fresher(cached any, written metav1.Object) any {
	c, ok := cached.(metav1.Object)
	if !ok || written == nil || written.GetUID() != c.GetUID() {
		return cached
	}
	n, err := resourceversion.CompareResourceVersion(written.GetResourceVersion(), c.GetResourceVersion())
	if err != nil || n <= 0 {
		return cached
	}
	return written
}

// syncRegistration writes desired into the registration object when it
// differs and returns the caBundle now in the API and whether the object
// exists.
func (h *hook) syncRegistration(ctx context.Context, desired []byte) ([]byte, bool, error) {
	reg := h.w.Registration
	obj, exists, err := h.registration()
	if err != nil {
		return nil, false, fmt.Errorf("reading %s %s from the cache: %w", reg.Kind, reg.Name, err)
	}
	if !exists && (reg.Kind == CRDConversion || h.s.opts.WebhookURLHost == "") {
		// CRDs are installed by the chart, and in Service mode so are the
		// configurations: recreating one after `helm uninstall` would leave
		// a failurePolicy=Fail webhook behind with nobody serving it.
		h.mu.Lock()
		first := !h.missingLogged
		h.missingLogged, h.emptyNoted = true, false
		h.mu.Unlock()
		if first {
			h.log.Info("registration object not found; waiting for it to be installed", "kind", reg.Kind.String(), "name", reg.Name)
		}
		h.published = nil
		return nil, false, nil
	}
	empty := noWebhooks(obj)
	h.mu.Lock()
	h.missingLogged = false
	firstEmpty := empty && !h.emptyNoted
	h.emptyNoted = empty
	h.mu.Unlock()
	if empty {
		// Emptied by hand or by a tool, or applied in part: no client
		// config to write a caBundle into, and nobody calls this webhook
		// through it, so its certs need not wait for a caBundle. Writing
		// would change nothing (and counting that as a repair, with its
		// back-off, would delay the webhooks an upgrade adds, which the
		// informer's update brings here at once). Entries are never added:
		// an existing configuration only ever has its caBundle written.
		if firstEmpty {
			msg := fmt.Sprintf("%s %s has no webhooks: no caBundle to write, and the apiserver calls nothing through it; the caBundle is written as soon as webhooks are added", reg.Kind, reg.Name)
			h.log.Info(msg, "kind", reg.Kind.String(), "name", reg.Name)
			if ro, ok := obj.(runtime.Object); ok {
				h.s.recorder.Event(ro, corev1.EventTypeWarning, "NoWebhooks", msg)
			}
		}
		// The entries an upgrade adds get their first caBundle: no repair.
		h.published = nil
		return nil, false, nil
	}
	if reg.Kind == CRDConversion && !h.ownsConversion() {
		// A later takeover writes a stanza another converter owned until
		// then: no repair.
		h.published = nil
		if h.otherMeshConverts() {
			// Nobody calls this mesh's converter: it writes nothing and its
			// certs need not wait for a caBundle it does not publish.
			return nil, false, nil
		}
		// Another replica of this mesh writes; its certs still wait for it.
		return caBundleOf(obj), exists, nil
	}
	var current []byte
	if exists {
		current = caBundleOf(obj)
		if bytes.Equal(current, desired) && (reg.Kind != CRDConversion ||
			conversionComplete(obj.(*apiextv1.CustomResourceDefinition)) && !h.mustRepoint(obj.(*apiextv1.CustomResourceDefinition))) {
			h.published = desired
			return current, true, nil
		}
	}
	if reg.Kind == CRDConversion {
		if err := h.routeGate(ctx, obj.(*apiextv1.CustomResourceDefinition), desired); err != nil {
			// Nobody calls this converter through the CRD yet: its certs
			// need not wait for a caBundle it does not publish.
			return nil, false, err
		}
	}
	// Publishing a caBundle that does not verify what this very listener
	// serves would break admission (and, for a CRD, every read of it).
	if err := h.handshake(ctx, desired); err != nil {
		return current, exists, fmt.Errorf("not registering %s %s yet: %w", reg.Kind, reg.Name, err)
	}
	if wait := h.repairWait(); wait > 0 {
		return current, exists, fmt.Errorf("%s %s caBundle keeps being changed (by another replica or someone else); next repair in %s", reg.Kind, reg.Name, wait)
	}
	// Who set the caBundle about to be replaced, read before the write.
	writer, by := writerUnknown, ""
	if exists {
		writer, by = caBundleWriter(obj, desired, h.ownManager)
	}
	manager := FieldManager(h.s.opts.Namespace)
	create, update := metav1.CreateOptions{FieldManager: manager}, metav1.UpdateOptions{FieldManager: manager}
	takeover := false
	var written runtime.Object
	what := ""
	switch reg.Kind {
	case MutatingConfiguration:
		if !exists {
			written, err = h.s.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx,
				NewMutating(reg.Mutating, h.ep, reg.Path, desired), create)
			what = "created the configuration"
			break
		}
		cp := obj.(*admv1.MutatingWebhookConfiguration).DeepCopy()
		SetMutatingCABundle(cp, desired)
		written, err = h.s.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, cp, update)
		what = "replaced the caBundle"
	case ValidatingConfiguration:
		if !exists {
			written, err = h.s.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx,
				NewValidating(reg.Validating, h.ep, reg.Path, desired), create)
			what = "created the configuration"
			break
		}
		cp := obj.(*admv1.ValidatingWebhookConfiguration).DeepCopy()
		SetValidatingCABundle(cp, desired)
		written, err = h.s.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, cp, update)
		what = "replaced the caBundle"
	case CRDConversion:
		cp := obj.(*apiextv1.CustomResourceDefinition).DeepCopy()
		repoint := h.mustRepoint(cp)
		if repoint {
			// Taken over from another converter: the stanza is rewritten
			// to target this one.
			cp.Spec.Conversion = nil
		}
		what = SetConversion(cp, reg.Conversion, h.ep, reg.Path, desired)
		if repoint {
			what = "took over spec.conversion (previous owner's Lease expired or released)"
			// Another mesh's converter wrote the stanza by its Lease: this
			// one replaces it, restoring nothing of its own.
			takeover = true
		}
		written, err = h.s.apiext.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, cp, update)
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// Another replica or user wrote first; the informer brings
			// the new version and the next pass re-evaluates it.
			return current, exists, fmt.Errorf("%s %s changed while updating it: %w", reg.Kind, reg.Name, err)
		}
		return current, exists, fmt.Errorf("updating %s %s: %w", reg.Kind, reg.Name, err)
	}
	if reg.Kind == CRDConversion {
		h.takeover.Store(false)
	}
	if w, ok := written.(metav1.Object); ok {
		h.mu.Lock()
		h.written, h.writtenAt = w, time.Now()
		h.mu.Unlock()
	}
	msg := fmt.Sprintf("%s: %s %s (was %s, now %s)", what, reg.Kind, reg.Name, describeBundle(current), describeBundle(desired))
	if by != "" {
		msg += fmt.Sprintf("; field manager %q had set it", by)
	}
	repair := !takeover && isRepair(exists, writer, h.published)
	if repair {
		caBundleRepairs.WithLabelValues(h.w.Name, reg.Kind.String()).Inc()
		h.s.recorder.Event(written, corev1.EventTypeNormal, "CABundleRepaired", msg)
	}
	if repair || isRevert(exists, h.published, desired) {
		h.noteRepair()
	}
	h.published = desired
	h.log.Info(msg, "kind", reg.Kind.String(), "name", reg.Name, "repair", repair)
	return desired, true, nil
}

// ownManager says whether manager names a write of our servers: this
// installation's, or one of a release that named none (FieldManager).
func (h *hook) ownManager(manager string) bool {
	return manager == FieldManager(h.s.opts.Namespace) || manager == legacyFieldManager
}

// repairWait is how long to hold off the next repair: nothing for the first
// two, then from 1 ms growing fourfold, up to 30 s, while someone keeps
// reverting us (a GitOps tool that owns the caBundle must not turn into a
// write storm); 30 s without a repair starts it over (noteRepair).
func (h *hook) repairWait() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repairBackoff == 0 {
		return 0
	}
	return time.Until(h.lastRepair.Add(h.repairBackoff))
}

func (h *hook) noteRepair() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	const quiet = 30 * time.Second
	switch {
	case now.Sub(h.lastRepair) > quiet:
		h.repairBackoff = 0
	case h.repairBackoff == 0:
		// Tolerate a burst (replicas converging, a Helm upgrade).
		h.repairBackoff = time.Millisecond
	default:
		h.repairBackoff = min(h.repairBackoff*4, quiet)
	}
	h.lastRepair = now
}

// noWebhooks says whether obj is a webhook configuration holding no webhook
// entries (`webhooks: []`): one with no client config to trust anything.
func noWebhooks(obj any) bool {
	switch o := obj.(type) {
	case *admv1.MutatingWebhookConfiguration:
		return len(o.Webhooks) == 0
	case *admv1.ValidatingWebhookConfiguration:
		return len(o.Webhooks) == 0
	}
	return false
}

// caBundleOf returns the caBundle of obj's client configs: nil when its
// webhook entries disagree, which counts as drift (every entry calls the
// same server, so each must trust the same roots).
func caBundleOf(obj any) []byte {
	b, _ := sharedCABundle(obj)
	return b
}

// sharedCABundle is caBundleOf and, when two webhook entries of a
// configuration carry different caBundles, which two.
func sharedCABundle(obj any) (bundle []byte, split string) {
	type entry struct {
		name   string
		bundle []byte
	}
	var entries []entry
	switch o := obj.(type) {
	case *admv1.MutatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			entries = append(entries, entry{w.Name, w.ClientConfig.CABundle})
		}
	case *admv1.ValidatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			entries = append(entries, entry{w.Name, w.ClientConfig.CABundle})
		}
	case *apiextv1.CustomResourceDefinition:
		return ConversionCABundle(o), ""
	}
	if len(entries) == 0 {
		return nil, ""
	}
	for _, e := range entries[1:] {
		if !bytes.Equal(e.bundle, entries[0].bundle) {
			return nil, fmt.Sprintf("webhooks %s and %s carry different caBundles", entries[0].name, e.name)
		}
	}
	return entries[0].bundle, ""
}

func conversionComplete(crd *apiextv1.CustomResourceDefinition) bool {
	c := crd.Spec.Conversion
	// v1 first: the apiserver sends the first review version it knows, and
	// reviewhttp answers v1 ConversionReviews only.
	return c != nil && c.Strategy == apiextv1.WebhookConverter && c.Webhook != nil && c.Webhook.ClientConfig != nil &&
		(c.Webhook.ClientConfig.URL != nil || c.Webhook.ClientConfig.Service != nil) &&
		len(c.Webhook.ConversionReviewVersions) > 0 && c.Webhook.ConversionReviewVersions[0] == apiextv1.SchemeGroupVersion.Version
}

// handshake connects to this webhook's own listener and verifies the cert
// it serves against caBundle, exactly as the apiserver would.
func (h *hook) handshake(ctx context.Context, caBundle []byte) error {
	if h.src.Current() == nil {
		return servingcert.ErrNoCert
	}
	conn, err := h.dialAsAPIServer(ctx, localAddr(h.s.opts.BindHost, h.w.Port), caBundle)
	if err != nil {
		return fmt.Errorf("TLS handshake with the webhook listener using the caBundle: %w", err)
	}
	return conn.Close()
}

// dialAsAPIServer makes the TLS handshake the apiserver makes with this
// webhook at addr: the Service's DNS name as server name, caBundle as the
// only roots, within handshakeTimeout.
func (h *hook) dialAsAPIServer(ctx context.Context, addr string, caBundle []byte) (*tls.Conn, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return nil, errors.New("caBundle holds no certificate")
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{RootCAs: pool, ServerName: h.spec.ServerName(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// describeBundle summarises a caBundle for events and logs.
func describeBundle(b []byte) string {
	if len(b) == 0 {
		return "empty"
	}
	cs, err := certs.ParseCertsPEM(b)
	if err != nil {
		return fmt.Sprintf("unparsable (%d bytes)", len(b))
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, fmt.Sprintf("%s serial %s… until %s", c.Subject.CommonName, shortSerial(c), c.NotAfter.UTC().Format(time.RFC3339)))
	}
	return fmt.Sprintf("%d CA cert(s): %s", len(cs), strings.Join(names, "; "))
}

func shortSerial(c *x509.Certificate) string {
	s := c.SerialNumber.Text(16)
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}
