package webhooks

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// A CRD's conversion stanza, once it says Webhook, sends every read and
// write of a non-storage version through the Service it names. Publishing it
// as soon as this converter serves (its own listener verified) is too early
// in Service mode: right after an install the Service has no ready endpoint
// yet (the apiserver gets "connection refused"), and in the first step of a
// takeover from FSM the Service of that name is still FSM's, selecting FSM's
// bootstrap. So in a pod the converter first publishes, or repoints, the
// stanza only once
//  1. one of this pod's IPs is a ready endpoint of its Service, as the EndpointSlice
//     controller reports it (what kube-proxy routes from), and
//  2. a TLS handshake through the Service's cluster IP, as the apiserver
//     dials it, is answered with this converter's own certificate: kube-proxy
//     has synced (on the node test it trailed the EndpointSlice by ~1 s, every
//     old-version read failing meanwhile).
// Step 2 proves the route from this pod's node only, and needs a pod to
// reach its own Service (hairpin traffic, which Kubernetes conformance
// requires); if it keeps failing for routeProofWait after step 1 passed, the
// stanza is published anyway, as before this gate, with a log line. Updates
// of a stanza that already targets the Service (caBundle rotation, repairs)
// never wait. Outside a pod (no --pod-ips) or in URL mode there is no Service
// to wait for.

// routeProofWait bounds how long a converter whose Service lists it as
// ready waits for a handshake through the Service before it publishes.
const routeProofWait = 30 * time.Second

// errRouteWait marks "the stanza waits for the Service": retried on the
// loop's back-off and logged once per reason, not as an error.
var errRouteWait = errors.New("waiting for the converter's Service to route to this pod")

// newRouteInformer watches the EndpointSlices of w's Service, or returns nil
// when the stanza is not gated on them.
func newRouteInformer(s *Server, w Webhook) cache.SharedIndexInformer {
	if w.Registration.Kind != CRDConversion || len(s.opts.PodIPs) == 0 || s.opts.WebhookURLHost != "" {
		return nil
	}
	sel := labels.Set{discoveryv1.LabelServiceName: w.ServiceName}.AsSelector().String()
	lw := cache.NewFilteredListWatchFromClient(s.client.DiscoveryV1().RESTClient(), "endpointslices", s.opts.Namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = sel })
	return cache.NewSharedIndexInformer(lw, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
}

// RoutesTo is nil when one of a Service's EndpointSlices lists one of a
// pod's IPs (one per family) as a ready endpoint (an unset ready condition
// counts as ready, as the API documents); otherwise it says what the
// Service routes to instead.
func RoutesTo(service string, endpointSlices []*discoveryv1.EndpointSlice, podIPs []string) error {
	ip := strings.Join(podIPs, ", ")
	var others []string
	for _, s := range endpointSlices {
		for _, ep := range s.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if slices.ContainsFunc(ep.Addresses, func(a string) bool { return slices.Contains(podIPs, a) }) {
				if ready {
					return nil
				}
				return fmt.Errorf("the Service %s lists this pod (%s) as an endpoint that is not ready", service, ip)
			}
			if ready && len(ep.Addresses) > 0 {
				who := ep.Addresses[0]
				if ep.TargetRef != nil && ep.TargetRef.Name != "" {
					who += " (" + strings.ToLower(ep.TargetRef.Kind) + " " + ep.TargetRef.Name + ")"
				}
				others = append(others, who)
			}
		}
	}
	if len(others) == 0 {
		return fmt.Errorf("the Service %s has no ready endpoint; this pod (%s) is not one yet", service, ip)
	}
	slices.Sort(others)
	if len(others) > 3 {
		others = append(others[:3], fmt.Sprintf("%d more", len(others)-3))
	}
	return fmt.Errorf("the Service %s routes to %s, not to this pod (%s)", service, strings.Join(others, ", "), ip)
}

// routeGate is nil when the converter may write crd's stanza, publishing
// caBundle: it already targets this converter's Service, or that Service
// routes to this pod; otherwise an error wrapping errRouteWait.
func (h *hook) routeGate(ctx context.Context, crd *apiextv1.CustomResourceDefinition, caBundle []byte) error {
	if h.routes == nil || conversionComplete(crd) && !h.mustRepoint(crd) {
		h.noteRouteWait(nil)
		return nil
	}
	var endpointSlices []*discoveryv1.EndpointSlice
	for _, obj := range h.routes.GetStore().List() {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			endpointSlices = append(endpointSlices, s)
		}
	}
	service := h.s.opts.Namespace + "/" + h.w.ServiceName
	err := RoutesTo(service, endpointSlices, h.s.opts.PodIPs)
	now := time.Now()
	h.mu.Lock()
	if err != nil {
		h.listedSince = time.Time{}
	} else if h.listedSince.IsZero() {
		h.listedSince = now
	}
	listedFor := now.Sub(h.listedSince)
	h.mu.Unlock()
	if err == nil {
		if err = h.dialThroughService(ctx, service, caBundle); err != nil && listedFor >= h.s.routeProofWait {
			h.log.Info("publishing the CRD's conversion stanza without a handshake through its Service: "+
				"the Service has listed this pod as ready for "+listedFor.Round(time.Second).String(),
				"crd", h.w.Registration.Name, "handshake", err.Error())
			err = nil
		}
	}
	h.noteRouteWait(err)
	if err != nil {
		return fmt.Errorf("%w: %w", errRouteWait, err)
	}
	return nil
}

// dialThroughService makes the TLS handshake the apiserver would with the
// Service's cluster IP, verifying with caBundle, and checks that the
// certificate it gets is this converter's: the one served here or the one
// stored for the replicas (FSM's bootstrap may hold a certificate from the
// same root for the same name).
func (h *hook) dialThroughService(ctx context.Context, service string, caBundle []byte) error {
	addr, err := h.serviceAddr(ctx)
	if err != nil {
		return err
	}
	conn, err := h.dialAsAPIServer(ctx, addr, caBundle)
	if err != nil {
		return fmt.Errorf("the Service %s (%s) does not answer as this converter yet: %w", service, addr, err)
	}
	defer func() { _ = conn.Close() }()
	peer := conn.ConnectionState().PeerCertificates
	if len(peer) == 0 || !h.ownsLeaf(peer[0].Raw) {
		desc := "none"
		if len(peer) > 0 {
			desc = fmt.Sprintf("serial %s…, issuer %q", shortSerial(peer[0]), peer[0].Issuer.CommonName)
		}
		return fmt.Errorf("the Service %s (%s) answers with a certificate that is not this converter's (%s)", service, addr, desc)
	}
	return nil
}

// ownsLeaf: der is the certificate this replica serves or the one stored in
// the serving Secret (another replica may serve it already).
func (h *hook) ownsLeaf(der []byte) bool {
	if cur := h.src.Current(); cur != nil && len(cur.Chain) > 0 && bytes.Equal(cur.Chain[0].Raw, der) {
		return true
	}
	if sec := h.src.Secret(); sec != nil {
		if b, _ := pem.Decode(sec.Data[servingcert.KeyCert]); b != nil && bytes.Equal(b.Bytes, der) {
			return true
		}
	}
	return false
}

// serviceClusterAddr is the address the apiserver dials for this webhook's
// Service: its cluster IP and the registered port.
func (h *hook) serviceClusterAddr(ctx context.Context) (string, error) {
	svc, err := h.s.client.CoreV1().Services(h.s.opts.Namespace).Get(ctx, h.w.ServiceName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading Service %s/%s: %w", h.s.opts.Namespace, h.w.ServiceName, err)
	}
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		return net.JoinHostPort(ip, strconv.Itoa(h.ep.Port)), nil
	}
	return "", fmt.Errorf("the Service %s/%s has no cluster IP", h.s.opts.Namespace, h.w.ServiceName)
}

// noteRouteWait records why the stanza is held back (nil: it is not) and
// logs each change once.
func (h *hook) noteRouteWait(err error) {
	h.mu.Lock()
	prev := h.routeWait
	h.routeWait = err
	h.mu.Unlock()
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		h.log.Info("not publishing the CRD's conversion stanza until the Service routes to this converter", "crd", h.w.Registration.Name, "reason", err.Error())
	case err == nil && prev != nil:
		h.log.Info("the CRD's conversion stanza no longer waits for the Service", "crd", h.w.Registration.Name)
	}
}

// routeWaitReason is why the stanza is held back, nil when it is not.
func (h *hook) routeWaitReason() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.routeWait
}
