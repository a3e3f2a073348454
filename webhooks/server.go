// Package webhooks is the serving layer shared by the injector, the
// validator and the CRD converter: one TLS listener per webhook with a
// serving cert hot-reloaded from its Secret, registration of the webhook
// configuration (or CRD conversion stanza) with a caBundle kept equal to the
// mesh CA bundle and repaired when anyone changes it, and /healthz, /readyz
// and /metrics.
package webhooks

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// Defaults.
const (
	// DefaultResyncInterval is how often each webhook re-reads the mesh CA
	// bundle and re-checks its cert and registration without an event.
	DefaultResyncInterval = 10 * time.Second
	// DefaultSettleDelay is how long a new caBundle must have been in the
	// API before a cert from a newly trusted root is served: the apiserver
	// picks up webhook configuration changes through its own watch.
	DefaultSettleDelay = 3 * time.Second
	// probeTTL is how long a passed end-to-end probe is trusted.
	probeTTL = 30 * time.Second
	// probeTimeout bounds one end-to-end probe.
	probeTimeout = 10 * time.Second
)

// Options configure the serving layer.
type Options struct {
	// Config reaches the apiserver.
	Config *rest.Config
	// Namespace is the fsm namespace (Secrets, Services).
	Namespace string
	// MeshName is the mesh (for labels and logs).
	MeshName string
	// WebhookURLHost, when set, registers webhooks by URL
	// (https://host:port/path) and lets the server create its own
	// configurations; otherwise they are Service references.
	WebhookURLHost string
	// BindHost is the host the webhook listeners bind (default: all).
	BindHost string
	// Issuer is the mesh CA.
	Issuer certs.Issuer
	// MetricsBindAddress / HealthProbeBindAddress: "" or "0" disables.
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// RenewFraction of a serving cert's lifetime after which it is renewed
	// (default 2/3).
	RenewFraction float64
	// CertValidity overrides the serving cert validity (default 87600h);
	// tests use seconds.
	CertValidity time.Duration
	// ServingKeyAlgorithm of the serving keys; empty: the issuer's default.
	// serve sets it with cert-manager, whose issuer's policy may hold the
	// key to what FSM asked for (docs/design.md).
	ServingKeyAlgorithm certs.KeyAlgorithm
	// ResyncInterval (default DefaultResyncInterval).
	ResyncInterval time.Duration
	// SettleDelay (default DefaultSettleDelay).
	SettleDelay time.Duration
	// ShutdownDrain is how long every listener keeps serving once ctx ends,
	// failing /readyz and closing each connection after its answer, before
	// its graceful shutdown (drain.go). 0: none.
	ShutdownDrain time.Duration
	// ConversionLeaseNamespace holds the Lease naming the one converter
	// (of every mesh in the cluster) that writes a CRD's conversion stanza
	// (default DefaultConversionLeaseNamespace; conversionlease.go).
	ConversionLeaseNamespace string
	// TLS is what the webhook listeners accept of a client's TLS (the zero
	// value: TLS 1.2 or later, DefaultCipherSuites for TLS 1.2).
	TLS TLSPolicy
	// PodIPs are this server's pod IPs (one per family). In Service mode
	// the converter then publishes the CRD's conversion stanza only once
	// its Service lists one of them as a ready endpoint
	// (conversionroute.go); none (outside a pod): at once.
	PodIPs []string
	// Log (default: discard).
	Log logr.Logger
}

// Webhook is one webhook served on its own port with its own cert.
type Webhook struct {
	// Name for logs, metrics and /readyz (e.g. "injector").
	Name string
	// Port the listener binds and the apiserver calls.
	Port int
	// ServiceName the apiserver calls in Service mode (e.g. "fsm-injector").
	ServiceName string
	// SecretName holds the serving cert (e.g. "mutating-webhook-cert-secret").
	SecretName string
	// Handlers by path (controller-runtime admission or conversion handlers).
	Handlers map[string]http.Handler
	// Registration says which API object carries the caBundle.
	Registration Registration
	// Probe, when set, proves the whole path end to end (e.g. a dry-run
	// request the apiserver must send through this webhook). It runs in the
	// background (readiness.go); /readyz/<name> reports it, /readyz never
	// waits for it.
	Probe func(ctx context.Context) error
	// Synced, when set, is nil once the caches the handlers read have
	// synced (CachesSynced builds it). Until then the webhook is not
	// serving: its pod is not Ready, so no admission waits on a cache that
	// is still listing.
	Synced func() error
	// ReportOnly keeps this webhook out of the pod's readiness (/readyz):
	// its problems are reported at /readyz/<name> and by
	// fsm_webhooks_ready, but never remove the endpoints of the Services
	// that select the pod for another webhook.
	ReportOnly bool
}

// ServingSpec is the serving cert this webhook uses under opts.
func (w Webhook) ServingSpec(opts Options) servingcert.Spec {
	return servingcert.Spec{
		SecretName:   w.SecretName,
		Namespace:    opts.Namespace,
		ServiceName:  w.ServiceName,
		URLHost:      opts.WebhookURLHost,
		Validity:     opts.CertValidity,
		KeyAlgorithm: opts.ServingKeyAlgorithm,
	}
}

func (w Webhook) endpoint(opts Options) Endpoint {
	return Endpoint{URLHost: opts.WebhookURLHost, Namespace: opts.Namespace, ServiceName: w.ServiceName, Port: w.Port}
}

// Server runs a set of webhooks.
type Server struct {
	opts        Options
	hooks       []*hook
	client      kubernetes.Interface
	apiext      apiextclient.Interface
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	timeouts    timeouts
	leaseTiming leaseTiming
	// routeProofWait: conversionroute.go (tests shorten it).
	routeProofWait time.Duration
}

// New validates opts and hooks and prepares a Server; nothing runs until
// Start.
func New(opts Options, hooks []Webhook) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if len(hooks) == 0 {
		return nil, errors.New("webhooks: no webhook to serve")
	}
	ports := map[int]string{}
	for _, w := range hooks {
		if err := w.validate(opts); err != nil {
			return nil, err
		}
		if other, dup := ports[w.Port]; dup {
			return nil, fmt.Errorf("webhooks: %s and %s both use port %d", other, w.Name, w.Port)
		}
		ports[w.Port] = w.Name
	}
	client, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("webhooks: kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("webhooks: apiextensions client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("webhooks: scheme: %w", err)
	}
	if err := apiextv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("webhooks: scheme: %w", err)
	}
	s := &Server{opts: opts.withDefaults(), client: client, apiext: apiext, broadcaster: record.NewBroadcaster(), timeouts: defaultTimeouts, leaseTiming: defaultLeaseTiming, routeProofWait: routeProofWait}
	s.timeouts.drain = opts.ShutdownDrain
	s.recorder = s.broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "fsm-webhooks"})
	for _, w := range hooks {
		s.hooks = append(s.hooks, newHook(s, w))
	}
	return s, nil
}

func (o Options) validate() error {
	switch {
	case o.Config == nil:
		return errors.New("webhooks: Options.Config (rest.Config) is required")
	case o.Issuer == nil:
		return errors.New("webhooks: Options.Issuer is required")
	case o.RenewFraction < 0 || o.RenewFraction >= 1:
		return fmt.Errorf("webhooks: RenewFraction %v must be in (0, 1)", o.RenewFraction)
	case o.CertValidity < 0:
		return fmt.Errorf("webhooks: CertValidity %s must not be negative", o.CertValidity)
	case o.ResyncInterval < 0:
		return fmt.Errorf("webhooks: ResyncInterval %s must not be negative", o.ResyncInterval)
	case o.SettleDelay < 0:
		return fmt.Errorf("webhooks: SettleDelay %s must not be negative", o.SettleDelay)
	case o.ShutdownDrain < 0:
		return fmt.Errorf("webhooks: ShutdownDrain %s must not be negative", o.ShutdownDrain)
	}
	if err := o.TLS.validate(); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("webhooks: fsm namespace %q is invalid: %v", o.Namespace, errs)
	}
	if errs := validation.IsDNS1123Label(o.ConversionLeaseNamespace); o.ConversionLeaseNamespace != "" && len(errs) > 0 {
		return fmt.Errorf("webhooks: conversion Lease namespace %q is invalid: %v", o.ConversionLeaseNamespace, errs)
	}
	if errs := validation.IsDNS1123Label(o.MeshName); len(errs) > 0 {
		return fmt.Errorf("webhooks: mesh name %q is invalid: %v", o.MeshName, errs)
	}
	for _, ip := range o.PodIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("webhooks: pod IP %q is not an IP address", ip)
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.RenewFraction == 0 {
		o.RenewFraction = certs.DefaultRenewFraction
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	if o.SettleDelay == 0 {
		o.SettleDelay = DefaultSettleDelay
	}
	if o.ConversionLeaseNamespace == "" {
		o.ConversionLeaseNamespace = DefaultConversionLeaseNamespace
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	return o
}

func (w Webhook) validate(opts Options) error {
	switch {
	case w.Name == "":
		return errors.New("webhooks: a webhook has no Name")
	case w.Port <= 0 || w.Port > 65535:
		return fmt.Errorf("webhooks: %s: Port %d is not in 1-65535", w.Name, w.Port)
	case len(w.Handlers) == 0:
		return fmt.Errorf("webhooks: %s: no handler", w.Name)
	case w.Registration.Name == "":
		return fmt.Errorf("webhooks: %s: Registration.Name is empty", w.Name)
	case w.Registration.Path == "" || w.Handlers[w.Registration.Path] == nil:
		return fmt.Errorf("webhooks: %s: Registration.Path %q has no handler", w.Name, w.Registration.Path)
	}
	switch w.Registration.Kind {
	case MutatingConfiguration:
		if w.Registration.Mutating == nil || len(w.Registration.Mutating.Webhooks) == 0 {
			return fmt.Errorf("webhooks: %s: Registration.Mutating must hold at least one webhook", w.Name)
		}
	case ValidatingConfiguration:
		if w.Registration.Validating == nil || len(w.Registration.Validating.Webhooks) == 0 {
			return fmt.Errorf("webhooks: %s: Registration.Validating must hold at least one webhook", w.Name)
		}
	case CRDConversion:
		if c := w.Registration.Conversion; c == nil || c.Strategy != apiextv1.WebhookConverter || c.Webhook == nil || len(c.Webhook.ConversionReviewVersions) == 0 {
			return fmt.Errorf("webhooks: %s: Registration.Conversion must be a Webhook strategy with conversionReviewVersions", w.Name)
		}
	default:
		return fmt.Errorf("webhooks: %s: unknown Registration.Kind %v", w.Name, w.Registration.Kind)
	}
	if err := w.ServingSpec(opts).Validate(); err != nil {
		return fmt.Errorf("webhooks: %s: %w", w.Name, err)
	}
	return nil
}

// Start runs every webhook, the health and metrics endpoints, until ctx
// ends or one of them fails.
func (s *Server) Start(ctx context.Context) error {
	s.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer s.broadcaster.Shutdown()
	registerCollector(s)
	defer unregisterCollector(s)

	if n, ok := s.opts.Issuer.(certs.BundleNotifier); ok {
		// A root rotation step taken elsewhere (certs rotate-root) reaches
		// the caBundles now, not at the next resync.
		defer n.OnBundleChange(s.Resync)()
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, h := range s.hooks {
		h.start(ctx, g)
	}
	if addr := s.opts.HealthProbeBindAddress; addr != "" && addr != "0" {
		mux := http.NewServeMux()
		live := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
		mux.Handle("/healthz", http.StripPrefix("/healthz", live))
		mux.Handle("/healthz/", http.StripPrefix("/healthz", live))
		s.readyzMux(mux)
		serveHTTP(ctx, g, "health probes", addr, unreadyWhenDraining(ctx, mux), nil, s.timeouts, s.opts.Log)
	}
	if addr := s.opts.MetricsBindAddress; addr != "" && addr != "0" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		serveHTTP(ctx, g, "metrics", addr, mux, nil, s.timeouts, s.opts.Log)
	}
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Resync makes every webhook re-read the CA bundle and re-check its cert
// and registration now (e.g. after a root rotation step in this process).
func (s *Server) Resync() {
	for _, h := range s.hooks {
		h.kick()
	}
}

// timeouts bound every connection of every listener (each webhook's, the
// health probes', the metrics'), so a client that trickles its headers or
// body, or never reads its answer, is cut off instead of holding a
// connection: a slow-loris client cannot hold a server.
type timeouts struct {
	// handshake bounds the TLS handshake from the accept.
	handshake time.Duration
	// readHeader bounds the request headers from their first byte.
	readHeader time.Duration
	// read bounds the headers and the body together, from their first byte.
	read time.Duration
	// write bounds the handler and the answer.
	write time.Duration
	// idle bounds the wait for a connection's next request, its first
	// included (firstRequestListener). Must be positive: net/http takes 0
	// as "read".
	idle time.Duration
	// drain is how long the listener serves on once its context ends
	// (drain.go).
	drain time.Duration
}

// defaultTimeouts: the apiserver writes a request at once and waits at most
// 30 s for the answer (a webhook's largest timeoutSeconds).
var defaultTimeouts = timeouts{
	// Twice the 10 s TLS handshake timeout client-go gives every transport
	// (SetTransportDefaults), the apiserver's webhook client's included, so
	// the server cuts only handshakes its client has given up on. A TLS 1.3
	// client is done one flight before the server: a server cutting first
	// closes connections its client already holds as established, and the
	// admission sent on one fails ("EOF", or "server closed idle
	// connection" from the pool; a POST is never retried). With 5 s, a
	// 300 pods/s overload on a shared 2-core machine saw 1,253 handshakes
	// cut in 30 s, each one a redial and a handshake more for a starved
	// apiserver.
	handshake:  20 * time.Second,
	readHeader: 5 * time.Second,
	// A reviewhttp.MaxBodyBytes body at well under 1 MB/s.
	read: 15 * time.Second,
	// The apiserver's 30 s, plus a margin: never cuts an answer it still
	// waits for (the injector gives up after 15 s).
	write: 35 * time.Second,
	// Above the idle timeout of the apiserver's webhook client, so the
	// client always closes an idle connection first and never writes to one
	// the server is closing: 90 s, http.DefaultTransport's, which client-go
	// gives every transport it builds (SetTransportDefaults); the apiserver
	// closed idle connections 90.0 s after their last answer against this
	// server in envtest. No bound at all would let any in-cluster client
	// hold connections forever.
	idle: 120 * time.Second,
}

// shutdownTimeout bounds a listener's graceful shutdown: requests in flight
// are answered (the apiserver waits at most 30 s for one), then it closes.
const shutdownTimeout = 30 * time.Second

// newHTTPServer is how every listener of this package serves.
func newHTTPServer(h http.Handler, t timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    1 << 20,
		// No BaseContext tied to the server's context: a request in flight
		// at shutdown is answered, not cancelled, while Shutdown waits.
	}
}

// serveHTTP serves h on addr until ctx ends; over TLS when tlsConf is set.
func serveHTTP(ctx context.Context, g *errgroup.Group, what, addr string, h http.Handler, tlsConf *tls.Config, t timeouts, log logr.Logger) {
	srv := newHTTPServer(closeWhenDraining(ctx, h), t)
	g.Go(func() error {
		raw, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s endpoint on %s: %w", what, addr, err)
		}
		ln := newListener(raw, tlsConf, t, log.WithValues("listener", what))
		log.Info("serving "+what, "address", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s endpoint on %s: %w", what, addr, err)
		}
		return nil
	})
	g.Go(func() error {
		awaitDrain(ctx, t.drain, what, log)
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		return nil
	})
}

// serveWebhook serves one webhook's handlers over TLS on its port, with the
// cert from memory. HTTP/1.1 only (as kubebuilder scaffolds webhooks since
// CVE-2023-44487): every timeout then applies per request, and the
// apiserver negotiates it through ALPN.
func (s *Server) serveWebhook(ctx context.Context, g *errgroup.Group, w Webhook, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), log logr.Logger) {
	mux := http.NewServeMux()
	for path, handler := range w.Handlers {
		mux.Handle(path, handler)
	}
	conf := &tls.Config{NextProtos: []string{"http/1.1"}}
	s.opts.TLS.apply(conf, getCert)
	serveHTTP(ctx, g, "webhook "+w.Name, net.JoinHostPort(s.opts.BindHost, strconv.Itoa(w.Port)), mux, conf, s.timeouts, log)
}

func localAddr(bindHost string, port int) string {
	host := bindHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// firstRequestListener accepts for an http.Server, over TLS when tlsConf is
// set, and hands it a connection only once its first request has begun to
// arrive: the TLS handshake is bounded by handshake, the wait for the
// first request by idle, as net/http bounds the wait for every later one.
// net/http alone starts the first request's header timeout when the
// handshake ends, and so closed after 5 s a connection the apiserver had
// dialed but not used: Go's http.Transport pools a dial that lost the race
// to a connection freed meanwhile, for 90 s like any idle connection, and a
// POST it sends on one the server is closing fails ("write: broken pipe",
// EOF; a POST is never retried).
type firstRequestListener struct {
	raw     net.Listener
	tlsConf *tls.Config
	t       timeouts
	log     logr.Logger
	ready   chan net.Conn
	errs    chan error
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, not yet handed over
}

func newListener(raw net.Listener, tlsConf *tls.Config, t timeouts, log logr.Logger) net.Listener {
	l := &firstRequestListener{
		raw: raw, tlsConf: tlsConf, t: t, log: log,
		ready: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
		pending: map[net.Conn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

// acceptLoop accepts raw connections and prepares each in its own
// goroutine. An Accept error goes to the http.Server, which backs off on a
// temporary one and asks again, and stops on any other (closing l).
func (l *firstRequestListener) acceptLoop() {
	for {
		c, err := l.raw.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.track(c) {
			_ = c.Close()
			return
		}
		go l.prepare(c)
	}
}

func (l *firstRequestListener) prepare(raw net.Conn) {
	c, err := awaitFirstRequest(raw, l.tlsConf, l.t)
	if err != nil {
		// As net/http's TLS server does: a plain HTTP request (curl
		// http://…) gets a 400 saying why, not a reset connection.
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			_ = raw.SetWriteDeadline(time.Now().Add(l.t.readHeader))
			_, _ = io.WriteString(raw, plainHTTPAnswer)
			l.untrack(raw)
			_ = raw.Close()
			return
		}
		// As net/http logs them; a connection closed before its handshake
		// (a TCP probe, a port scan) is not worth a line.
		var he handshakeError
		if errors.As(err, &he) && !errors.Is(err, io.EOF) {
			l.log.Info("TLS handshake failed", "remote", raw.RemoteAddr().String(), "error", he.err.Error())
		}
		l.untrack(raw)
		_ = raw.Close()
		return
	}
	// From here c is the http.Server's or closed here, never by Close.
	l.untrack(raw)
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// Accept returns the next connection whose first request has begun.
func (l *firstRequestListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes every connection not handed over yet.
func (l *firstRequestListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		l.mu.Lock()
		close(l.done)
		for c := range l.pending {
			_ = c.Close()
		}
		l.pending = nil
		l.mu.Unlock()
		err = l.raw.Close()
	})
	return err
}

func (l *firstRequestListener) Addr() net.Addr { return l.raw.Addr() }

func (l *firstRequestListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *firstRequestListener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, c)
}

// awaitFirstRequest completes raw's TLS handshake (tlsConf set) within
// t.handshake, then waits up to t.idle for the first byte of its first
// request, and returns the connection to serve it on (a *tls.Conn over TLS,
// so net/http sees the TLS state; its own Handshake is then a no-op).
func awaitFirstRequest(raw net.Conn, tlsConf *tls.Config, t timeouts) (net.Conn, error) {
	pc := &peekConn{Conn: raw, r: bufio.NewReader(raw), tlsRecords: tlsConf != nil}
	var c net.Conn = pc
	if tlsConf != nil {
		tc := tls.Server(pc, tlsConf)
		if t.handshake > 0 {
			_ = raw.SetDeadline(time.Now().Add(t.handshake))
		}
		if err := tc.Handshake(); err != nil {
			return nil, handshakeError{err}
		}
		_ = raw.SetDeadline(time.Time{})
		c = tc
	}
	if t.idle > 0 {
		_ = raw.SetReadDeadline(time.Now().Add(t.idle))
	}
	if _, err := pc.r.Peek(1); err != nil {
		return nil, err
	}
	_ = raw.SetReadDeadline(time.Time{})
	return c, nil
}

// peekConn reads raw through a buffer, so the first byte of a request can
// be awaited without consuming it. Under TLS (tlsRecords) each Read stops
// at the end of the TLS record being read: tls.Conn then never buffers a
// byte past the handshake's last record, and a request that arrived with
// it is seen by Peek.
type peekConn struct {
	net.Conn
	r          *bufio.Reader
	tlsRecords bool
	left       int // bytes of the current TLS record not yet read
}

// tlsRecordHeaderLen: content type, version, length (RFC 8446 5.1).
const tlsRecordHeaderLen = 5

func (c *peekConn) Read(b []byte) (int, error) {
	if !c.tlsRecords {
		return c.r.Read(b)
	}
	if c.left == 0 {
		hdr, err := c.r.Peek(tlsRecordHeaderLen)
		switch {
		case err == nil:
			c.left = tlsRecordHeaderLen + int(binary.BigEndian.Uint16(hdr[3:]))
		case len(hdr) == 0:
			return 0, err
		default: // a truncated header: tls.Conn reports it
			c.left = len(hdr)
		}
	}
	if len(b) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= n
	return n, err
}

type handshakeError struct{ err error }

// plainHTTPAnswer is net/http's answer to plain HTTP sent to a TLS port.
const plainHTTPAnswer = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// looksLikeHTTP: the first five bytes of a connection, read as a TLS record
// header, begin an HTTP/1 request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

func (e handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e handshakeError) Unwrap() error { return e.err }
