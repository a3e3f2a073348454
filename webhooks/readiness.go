package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// Readiness answers from memory: what the informers hold (the served cert,
// the registration object) and the last results of the costly end-to-end
// proofs (a TLS handshake with the listener, the webhook's Probe through the
// apiserver), which run in the background on a clock. A kubelet probe
// (the chart's: 2 s timeout) therefore never waits on the network, and a slow apiserver
// or a deleted configuration cannot time it out.
//
// A pod has one readiness for every Service that selects it, so the pod's
// /readyz answers only "can this pod serve the webhooks that gate it"
// (listener up with a loaded cert its own root verifies). Registration
// objects and end-to-end probes are cluster-wide facts: failing every
// replica for them removes the injector's endpoints and fails every pod
// create, while fixing nothing. They are reported per webhook at
// /readyz/<name>, by fsm_webhooks_ready{webhook} and in `certs status`.

// handshakeTimeout bounds one handshake with the listener.
const handshakeTimeout = 5 * time.Second

// The proofs run on the resync clock: the listener handshake twice per
// ResyncInterval (5 s in serve), the end-to-end Probe every other one
// (20 s), trusted for at least probeTTL.
func (h *hook) handshakeInterval() time.Duration { return h.s.opts.ResyncInterval / 2 }
func (h *hook) probeInterval() time.Duration     { return 2 * h.s.opts.ResyncInterval }
func (h *hook) probeTTL() time.Duration {
	return max(probeTTL, h.probeInterval()+probeTimeout)
}

// proof is the last result of a background check, for the state (served
// cert and caBundle) it ran against.
type proof struct {
	mu    sync.Mutex
	state string
	at    time.Time
	err   error
	// running is when the check in progress started (zero when idle).
	running time.Time
	// passed is when the last result, for whatever state, was a pass (zero
	// once one failed; begin does not clear it): what checkAcross bridges a
	// state change with.
	passed time.Time
}

func (p *proof) begin(state string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = time.Now()
	if p.state != state {
		// A result for another cert or caBundle says nothing about this one.
		p.state, p.at, p.err = state, time.Time{}, nil
	}
}

func (p *proof) end(state string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = time.Time{}
	p.state, p.at, p.err = state, time.Now(), err
	p.passed = time.Time{}
	if err == nil {
		p.passed = p.at
	}
}

// ranFor says whether the last (or running) check was for state.
func (p *proof) ranFor(state string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == state && (!p.at.IsZero() || !p.running.IsZero())
}

// check says whether the proof passed for state within ttl.
func (p *proof) check(state string, ttl time.Duration, now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checkLocked(state, ttl, now)
}

// checkAcross is check, except that while state has no result yet (its
// first check pending or running) a pass for the state before it within ttl
// still counts. A served cert changes under a running listener (a renewal
// reaches every replica's watch at about the same moment) before its first
// handshake can be proven: failing the pod's readiness there, with the
// chart's failureThreshold 1, would take every replica out of the Services
// at once. A result for state, failed or stale, is never bridged.
func (p *proof) checkAcross(state string, ttl time.Duration, now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.checkLocked(state, ttl, now)
	if err != nil && (p.state != state || p.at.IsZero()) && !p.passed.IsZero() && now.Sub(p.passed) <= ttl {
		return nil
	}
	return err
}

func (p *proof) checkLocked(state string, ttl time.Duration, now time.Time) error {
	switch {
	case p.state == state && !p.at.IsZero() && p.err != nil:
		return p.err
	case p.state == state && !p.at.IsZero() && now.Sub(p.at) <= ttl:
		return nil
	case !p.running.IsZero():
		return fmt.Errorf("not proven yet: a check running for %s has not answered", now.Sub(p.running).Round(time.Millisecond))
	case p.state == state && !p.at.IsZero():
		return fmt.Errorf("last proven %s ago, more than %s", now.Sub(p.at).Round(time.Second), ttl)
	default:
		return errors.New("not proven yet")
	}
}

// runProofs runs the listener handshake and the Probe, each on its own
// clock so a Probe stuck on a slow apiserver never delays the handshake.
func (h *hook) runProofs(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.every(ctx, h.handshakeInterval(), h.proveNow, h.proveHandshake)
	}()
	if h.w.Probe != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.every(ctx, h.probeInterval(), h.probeNow, h.proveEndToEnd)
		}()
	}
	wg.Wait()
}

// every runs f now, then every interval and whenever trigger fires.
func (h *hook) every(ctx context.Context, interval time.Duration, trigger <-chan struct{}, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-trigger:
		}
	}
}

// kickProofs runs the handshake again now, and the Probe when the cert or
// caBundle it last ran against changed (a caBundle fight must not turn into
// back-to-back dry runs).
func (h *hook) kickProofs() {
	chans := []chan struct{}{h.proveNow}
	if state, ok := h.probeState(); ok && !h.probeProof.ranFor(state) {
		chans = append(chans, h.probeNow)
	}
	for _, c := range chans {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// proveHandshake connects to the listener and verifies what it serves
// against the served cert's own root: this pod serves this webhook.
func (h *hook) proveHandshake(ctx context.Context) {
	served := h.src.Current()
	if served == nil {
		return
	}
	state := served.Fingerprint
	h.handshakeProof.begin(state)
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	h.handshakeProof.end(state, h.handshake(ctx, served.CA))
}

// proveEndToEnd runs Probe against the current cert and caBundle.
func (h *hook) proveEndToEnd(ctx context.Context) {
	state, ok := h.probeState()
	if !ok {
		return
	}
	h.probeProof.begin(state)
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err := h.w.Probe(pctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		err = fmt.Errorf("end-to-end probe: %w", err)
	}
	h.probeProof.end(state, err)
}

// probeState names what a probe result holds for: the served cert and the
// caBundle in the API; false while either is missing.
func (h *hook) probeState() (string, bool) {
	served := h.src.Current()
	obj, exists, err := h.registration()
	if served == nil || err != nil || !exists {
		return "", false
	}
	return served.Fingerprint + "/" + string(caBundleOf(obj)), true
}

// serving is the pod-readiness part: the cert is loaded, the listener
// served it in a handshake within the last few intervals, and the caches the
// handlers read have synced.
func (h *hook) serving(now time.Time) error {
	served := h.src.Current()
	if served == nil {
		return fmt.Errorf("serving cert from Secret %s/%s not loaded", h.s.opts.Namespace, h.w.SecretName)
	}
	if h.w.Synced != nil {
		if err := h.w.Synced(); err != nil {
			return err
		}
	}
	// A few missed rounds, not one slow handshake, make a listener stale;
	// a cert just swapped in keeps the listener's last pass until its own
	// handshake answers.
	if err := h.handshakeProof.checkAcross(served.Fingerprint, 3*h.handshakeInterval()+handshakeTimeout, now); err != nil {
		return fmt.Errorf("listener on port %d: %w", h.w.Port, err)
	}
	return nil
}

// ready is the webhook's whole state (/readyz/<name>, Server.Ready): it
// serves, its registration object exists and its caBundle verifies the
// served cert for the name the apiserver dials, and Probe passed within
// probeTTL. Memory only.
func (h *hook) ready(now time.Time) error {
	if err := h.serving(now); err != nil {
		return err
	}
	served := h.src.Current()
	reg := h.w.Registration
	if reg.Kind == CRDConversion && h.otherMeshConverts() {
		// Serving is all a converter does while another mesh's owns the
		// stanza.
		return nil
	}
	obj, exists, err := h.registration()
	if err != nil || !exists {
		return fmt.Errorf("%s %s not found", reg.Kind, reg.Name)
	}
	if noWebhooks(obj) {
		return fmt.Errorf("%s %s has no webhooks: the apiserver calls nothing through it", reg.Kind, reg.Name)
	}
	apiBundle, split := sharedCABundle(obj)
	if split != "" {
		return fmt.Errorf("%s %s: %s", reg.Kind, reg.Name, split)
	}
	if reg.Kind == CRDConversion && !conversionComplete(obj.(*apiextv1.CustomResourceDefinition)) {
		if why := h.routeWaitReason(); why != nil {
			return fmt.Errorf("%s %s has no conversion webhook yet: waiting for the Service to route to this converter: %w", reg.Kind, reg.Name, why)
		}
		return fmt.Errorf("%s %s has no conversion webhook yet", reg.Kind, reg.Name)
	}
	if err := servingcert.Verifies(apiBundle, served.Chain, h.spec.ServerName(), now); err != nil {
		return fmt.Errorf("the caBundle of %s %s does not verify the served cert: %w", reg.Kind, reg.Name, err)
	}
	if h.w.Probe == nil {
		return nil
	}
	state, _ := h.probeState()
	return h.probeProof.check(state, h.probeTTL(), now)
}

// gatesPod says whether this webhook's serving state is part of the pod's
// readiness.
func (h *hook) gatesPod() bool { return !h.w.ReportOnly }

// ReadyChecks are the /readyz/<name> checks: each webhook's whole state.
func (s *Server) ReadyChecks() map[string]healthz.Checker {
	out := map[string]healthz.Checker{}
	for _, h := range s.hooks {
		out[h.w.Name] = func(*http.Request) error { return h.ready(time.Now()) }
	}
	return out
}

// PodReadyChecks are the /readyz checks, the pod's readiness: each
// webhook that is not ReportOnly serves.
func (s *Server) PodReadyChecks() map[string]healthz.Checker {
	out := map[string]healthz.Checker{}
	for _, h := range s.hooks {
		if h.gatesPod() {
			out[h.w.Name] = func(*http.Request) error { return h.serving(time.Now()) }
		}
	}
	return out
}

// Ready is nil once every webhook is ready in full (every /readyz/<name>).
func (s *Server) Ready(context.Context) error {
	now := time.Now()
	for _, h := range s.hooks {
		if err := h.ready(now); err != nil {
			return fmt.Errorf("%s: %w", h.w.Name, err)
		}
	}
	return nil
}

// readyzMux serves /readyz (the pod's readiness) and /readyz/<name> (one
// webhook's whole state; /readyz/ lists them all).
func (s *Server) readyzMux(mux *http.ServeMux) {
	pod := &healthz.Handler{Checks: s.PodReadyChecks()}
	each := &healthz.Handler{Checks: s.ReadyChecks()}
	mux.Handle("/readyz", http.StripPrefix("/readyz", pod))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", each))
}
