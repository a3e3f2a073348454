package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

func endpoint(ip string, ready *bool, pod string) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return ep
}

func endpointSlice(eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps}
}

func TestRoutesTo(t *testing.T) {
	const me, meV6, svc = "10.244.0.17", "fd00:10:244::17", "fsm-system/fsm-bootstrap"
	yes, no := ptr.To(true), ptr.To(false)
	for _, tc := range []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   string // "" routes here
	}{
		{"ready", []*discoveryv1.EndpointSlice{endpointSlice(endpoint(me, yes, "fsm-webhooks-a"))}, ""},
		{"ready unset counts as ready", []*discoveryv1.EndpointSlice{endpointSlice(endpoint(me, nil, ""))}, ""},
		{"an IPv6 Service, the pod's second family", []*discoveryv1.EndpointSlice{{AddressType: discoveryv1.AddressTypeIPv6,
			Endpoints: []discoveryv1.Endpoint{endpoint(meV6, yes, "fsm-webhooks-a")}}}, ""},
		{"in the second slice", []*discoveryv1.EndpointSlice{
			endpointSlice(endpoint("10.244.0.18", yes, "fsm-webhooks-b")),
			endpointSlice(endpoint(me, yes, "fsm-webhooks-a")),
		}, ""},
		{"no slice", nil, "the Service fsm-system/fsm-bootstrap has no ready endpoint; this pod (10.244.0.17, fd00:10:244::17) is not one yet"},
		{"empty slice", []*discoveryv1.EndpointSlice{endpointSlice()},
			"the Service fsm-system/fsm-bootstrap has no ready endpoint; this pod (10.244.0.17, fd00:10:244::17) is not one yet"},
		{"listed, not ready", []*discoveryv1.EndpointSlice{endpointSlice(endpoint(me, no, "fsm-webhooks-a"))},
			"the Service fsm-system/fsm-bootstrap lists this pod (10.244.0.17, fd00:10:244::17) as an endpoint that is not ready"},
		{"FSM's bootstrap behind the Service", []*discoveryv1.EndpointSlice{endpointSlice(endpoint("10.244.0.9", yes, "fsm-bootstrap-5d8f"))},
			"the Service fsm-system/fsm-bootstrap routes to 10.244.0.9 (pod fsm-bootstrap-5d8f), not to this pod (10.244.0.17, fd00:10:244::17)"},
		{"only unready others", []*discoveryv1.EndpointSlice{endpointSlice(endpoint("10.244.0.9", no, "fsm-bootstrap-5d8f"))},
			"the Service fsm-system/fsm-bootstrap has no ready endpoint; this pod (10.244.0.17, fd00:10:244::17) is not one yet"},
		{"many others, named in order", []*discoveryv1.EndpointSlice{endpointSlice(
			endpoint("10.0.0.4", yes, ""), endpoint("10.0.0.2", yes, ""), endpoint("10.0.0.3", yes, ""), endpoint("10.0.0.1", yes, ""), endpoint("10.0.0.5", yes, ""))},
			"the Service fsm-system/fsm-bootstrap routes to 10.0.0.1, 10.0.0.2, 10.0.0.3, 2 more, not to this pod (10.244.0.17, fd00:10:244::17)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RoutesTo(svc, tc.slices, []string{me, meV6})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v, want it routed", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// gatedConverter builds (does not start) a converter for crd in Service
// mode, in a pod of IP podIP, waiting at most proofWait for a handshake
// through its Service.
func gatedConverter(t *testing.T, tc *testCase, name, crd, podIP string, proofWait time.Duration) (*Server, *hook, Webhook, Options) {
	t.Helper()
	w := Webhook{
		Name: name, Port: freePort(t), ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
		Handlers: map[string]http.Handler{fsmnames.ConverterPath: convertHandler()},
		Registration: Registration{Kind: CRDConversion, Name: crd, Path: fsmnames.ConverterPath, Conversion: &apiextv1.CustomResourceConversion{
			Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}},
		}},
	}
	opts := tc.options()
	opts.PodIPs = []string{podIP}
	srv, err := New(opts, []Webhook{w})
	if err != nil {
		t.Fatal(err)
	}
	srv.routeProofWait = proofWait
	return srv, srv.hooks[0], w, opts
}

// testConversionWaitsForRoute: in Service mode with a pod IP the converter
// publishes the CRD's conversion stanza only once its Service's
// EndpointSlices list the pod as ready and a handshake through the Service
// reaches this converter: not while the Service has no endpoint (a fresh
// install), routes elsewhere (step 1 of a takeover: FSM's bootstrap), lists
// the pod unready, or lists it but does not answer as it yet (kube-proxy not
// synced). envtest runs no EndpointSlice controller and no kube-proxy, so
// the test writes the slices and points the Service's address itself.
func testConversionWaitsForRoute(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "convroute", false)
	// A CRD name no other test uses: cleanups do not wait for the deletion,
	// and a test creating the same name next finds it still being deleted.
	apiext, crd := createTwoVersionCRD(ctx, t, "whatsit", "Whatsit")
	const podIP = "10.244.0.17"
	srv, h, w, opts := gatedConverter(t, tc, "converter-route", crd.Name, podIP, time.Hour) // the fallback has its own test
	// envtest routes no Service: the handshake "through the Service" goes
	// where the test says (nothing at first).
	var behind atomic.Pointer[string]
	h.serviceAddr = func(context.Context) (string, error) {
		if a := behind.Load(); a != nil {
			return *a, nil
		}
		return "", errTest("the Service " + tc.ns + "/" + fsmnames.ConverterService + " has no cluster IP (test)")
	}
	run(t, srv)
	waitFor(t, 30*time.Second, "converter serving", func() error { return h.serving(time.Now()) })

	stanza := func() *apiextv1.CustomResourceDefinition {
		t.Helper()
		got, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	held := func(step, reason string) {
		t.Helper()
		notPublished := func() {
			t.Helper()
			if got := stanza(); conversionComplete(got) {
				t.Fatalf("%s: the conversion stanza was published (strategy %s)", step, got.Spec.Conversion.Strategy)
			}
		}
		// Readiness names the change once the gate has seen it (polled: a
		// starved machine delivers the watch event late), and nothing is
		// published meanwhile, nor in three resyncs after.
		var err error
		for deadline := time.Now().Add(settleWithin); ; time.Sleep(50 * time.Millisecond) {
			notPublished()
			if err = h.ready(time.Now()); err != nil && strings.Contains(err.Error(), reason) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz/%s = %v, want it to say %q", step, w.Name, err, reason)
			}
		}
		time.Sleep(3 * opts.ResyncInterval)
		notPublished()
		if err := h.ready(time.Now()); err == nil || !strings.Contains(err.Error(), reason) {
			t.Fatalf("%s: /readyz/%s = %v three resyncs later, want it to say %q", step, w.Name, err, reason)
		}
	}
	held("no EndpointSlice", "has no ready endpoint; this pod (10.244.0.17) is not one yet")

	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: fsmnames.ConverterService + "-abcde", Namespace: tc.ns, Labels: map[string]string{discoveryv1.LabelServiceName: fsmnames.ConverterService}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint("10.244.0.9", ptr.To(true), "fsm-bootstrap-5d8f")},
	}
	// Another Service's slice listing this pod does not count.
	other := slice.DeepCopy()
	other.Name, other.Labels = "fsm-injector-abcde", map[string]string{discoveryv1.LabelServiceName: fsmnames.InjectorService}
	other.Endpoints = []discoveryv1.Endpoint{endpoint(podIP, ptr.To(true), "fsm-webhooks-a")}
	slices := tc.cs.DiscoveryV1().EndpointSlices(tc.ns)
	for _, s := range []*discoveryv1.EndpointSlice{slice, other} {
		if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	held("the Service routes to FSM's bootstrap", "routes to 10.244.0.9 (pod fsm-bootstrap-5d8f), not to this pod (10.244.0.17)")

	update := func(ready bool) {
		t.Helper()
		cur, err := slices.Get(ctx, slice.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints = []discoveryv1.Endpoint{endpoint(podIP, ptr.To(ready), "fsm-webhooks-a")}
		if _, err := slices.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(false)
	held("this pod listed, not ready", "lists this pod (10.244.0.17) as an endpoint that is not ready")

	update(true)
	held("listed and ready, but nothing answers through the Service (kube-proxy not synced)", "has no cluster IP (test)")

	// What answers through the Service is a server with a certificate of
	// the same root for the same name (FSM's bootstrap during a takeover,
	// a replica of an older install): not this converter.
	sameRoot, err := tc.ca.Issue(ctx, certs.Request{CommonName: h.spec.ServerName(), DNSNames: []string{h.spec.ServerName()}, Validity: time.Hour, Usage: certs.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(sameRoot.CertPEM, sameRoot.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
		}
	}()
	strangerAddr := ln.Addr().String()
	behind.Store(&strangerAddr)
	held("another server of the same root behind the Service", "answers with a certificate that is not this converter's")

	ours := localAddr(opts.BindHost, w.Port)
	behind.Store(&ours)
	waitFor(t, settleWithin, "the conversion stanza published once the Service routes here", func() error {
		got := stanza()
		if !conversionComplete(got) {
			return errTest("not published")
		}
		if svc := got.Spec.Conversion.Webhook.ClientConfig.Service; svc == nil || svc.Name != fsmnames.ConverterService || svc.Namespace != tc.ns {
			return errTest("published with the wrong target")
		}
		if !bytes.Equal(ConversionCABundle(got), mustBundle(t, tc)) {
			return errTest("published without the mesh caBundle")
		}
		return nil
	})

	// Published, a stanza that targets the Service is kept up whatever the
	// slices say: with this pod gone from them (a restart, a rollout), a
	// caBundle someone replaced is still repaired.
	if err := slices.Delete(ctx, slice.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	stranger, err := certstest.New(ctx, certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	strangerBundle, err := stranger.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := stanza()
	got.Spec.Conversion.Webhook.ClientConfig.CABundle = strangerBundle
	if _, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "the caBundle of a published stanza repaired without a route", func() error {
		if !bytes.Equal(ConversionCABundle(stanza()), mustBundle(t, tc)) {
			return errTest("not repaired")
		}
		return nil
	})
}

// testConversionRouteFallback: a Service that lists this pod as ready but
// never answers a handshake from it (no hairpin route to itself, a policy in
// the way) delays the stanza by routeProofWait, never forever.
func testConversionRouteFallback(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "convfallback", false)
	apiext, crd := createTwoVersionCRD(ctx, t, "doohickey", "Doohickey")
	const podIP = "10.244.0.21"
	const wait = 5 * time.Second
	srv, h, w, _ := gatedConverter(t, tc, "converter-fallback", crd.Name, podIP, wait)
	nobody := localAddr("127.0.0.1", freePort(t)) // nothing listens: refused
	h.serviceAddr = func(context.Context) (string, error) { return nobody, nil }
	run(t, srv)
	waitFor(t, 30*time.Second, "converter serving", func() error { return h.serving(time.Now()) })

	listed := time.Now()
	if _, err := tc.cs.DiscoveryV1().EndpointSlices(tc.ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: fsmnames.ConverterService + "-fghij", Namespace: tc.ns, Labels: map[string]string{discoveryv1.LabelServiceName: fsmnames.ConverterService}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint(podIP, ptr.To(true), "fsm-webhooks-a")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	published := func() bool {
		got, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return conversionComplete(got)
	}
	// Until the wait is up nothing is published, and readiness names the
	// failed handshake once the gate has seen the slice (polled: a starved
	// machine delivers the watch event late, seconds after the create, and
	// the wait runs from then, so the bound is settleWithin, not wait).
	for {
		if published() {
			t.Fatalf("published %s after the Service listed the pod, before the %s wait for a handshake through it", time.Since(listed).Round(time.Millisecond), wait)
		}
		err := h.ready(time.Now())
		if err != nil && strings.Contains(err.Error(), "does not answer as this converter yet") {
			break
		}
		if time.Since(listed) > settleWithin {
			t.Fatalf("/readyz/%s = %v %s after the slice, want it to name the failed handshake", w.Name, err, time.Since(listed).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, settleWithin, "the stanza published after the wait without a handshake through the Service", func() error {
		if !published() {
			return errTest("not published")
		}
		return nil
	})
	if d := time.Since(listed); d < wait {
		t.Fatalf("published %s after the Service listed the pod, want no sooner than %s", d.Round(time.Millisecond), wait)
	}
}
