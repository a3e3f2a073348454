// Package webhooks is the serving layer shared by the injector, the
// validator and the CRD converter: one TLS listener per webhook with a
// serving cert hot-reloaded from its Secret, registration of the webhook
// configuration (or CRD conversion stanza) with a caBundle kept equal to the
// mesh CA bundle and repaired when anyone changes it, and /healthz, /readyz
// and /metrics.
package webhooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
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
	// ClusterDomain for the serving cert SANs (default cluster.local).
	ClusterDomain string
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
	// ReportOnly keeps this webhook out of the pod's readiness (/readyz):
	// its problems are reported at /readyz/<name> and by
	// fsm_webhooks_ready, but never remove the endpoints of the Services
	// that select the pod for another webhook.
	ReportOnly bool
}

// ServingSpec is the serving cert this webhook uses under opts.
func (w Webhook) ServingSpec(opts Options) servingcert.Spec {
	return servingcert.Spec{
		SecretName:    w.SecretName,
		Namespace:     opts.Namespace,
		ServiceName:   w.ServiceName,
		ClusterDomain: opts.ClusterDomain,
		URLHost:       opts.WebhookURLHost,
		Validity:      opts.CertValidity,
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
	s := &Server{opts: opts.withDefaults(), client: client, apiext: apiext, broadcaster: record.NewBroadcaster(), timeouts: defaultTimeouts, leaseTiming: defaultLeaseTiming}
	s.timeouts.drain = opts.ShutdownDrain
	s.recorder = s.broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "fsm-webhooks"})
	for _, w := range hooks {
		s.hooks = append(s.hooks, newHook(s, w))
	}
	return s, nil
}

// Run serves hooks until ctx ends.
func Run(ctx context.Context, opts Options, hooks []Webhook) error {
	s, err := New(opts, hooks)
	if err != nil {
		return err
	}
	return s.Start(ctx)
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
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("webhooks: fsm namespace %q is invalid: %v", o.Namespace, errs)
	}
	if errs := validation.IsDNS1123Label(o.ConversionLeaseNamespace); o.ConversionLeaseNamespace != "" && len(errs) > 0 {
		return fmt.Errorf("webhooks: conversion Lease namespace %q is invalid: %v", o.ConversionLeaseNamespace, errs)
	}
	if errs := validation.IsDNS1123Label(o.MeshName); len(errs) > 0 {
		return fmt.Errorf("webhooks: mesh name %q is invalid: %v", o.MeshName, errs)
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
	// readHeader bounds the request headers, and with them the TLS
	// handshake (net/http bounds it by the smallest of these).
	readHeader time.Duration
	// read bounds the headers and the body together.
	read time.Duration
	// write bounds the handler and the answer.
	write time.Duration
	// idle bounds a keep-alive connection between requests.
	idle time.Duration
	// drain is how long the listener serves on once its context ends
	// (drain.go).
	drain time.Duration
}

// defaultTimeouts: the apiserver writes a request at once and waits at most
// 30 s for the answer (a webhook's largest timeoutSeconds).
var defaultTimeouts = timeouts{
	readHeader: 5 * time.Second,
	// A reviewhttp.MaxBodyBytes body at well under 1 MB/s.
	read: 15 * time.Second,
	// The apiserver's 30 s, plus a margin: never cuts an answer it still
	// waits for (the injector gives up after 15 s).
	write: 35 * time.Second,
	// Above the idle timeout of the apiserver's client (90 s: client-go
	// takes http.DefaultTransport's), so the client always closes first and
	// never writes to a connection the server is closing. Equal, they raced:
	// the server's clock starts when it has written an answer, the client's
	// when it has read it, so the server closed first, and a 10-min load at
	// 100 pods/s saw 2 creates fail with "write: broken pipe".
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
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s endpoint on %s: %w", what, addr, err)
		}
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
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
	tlsOptions(getCert)(conf)
	serveHTTP(ctx, g, "webhook "+w.Name, net.JoinHostPort(s.opts.BindHost, strconv.Itoa(w.Port)), mux, conf, s.timeouts, log)
}

// tlsOptions are the listener's TLS settings: the cert from memory, TLS 1.2
// or later, and for TLS 1.2 only forward-secret AEAD suites.
func tlsOptions(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.Config) {
	return func(c *tls.Config) {
		c.GetCertificate = getCert
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}
	}
}

func localAddr(bindHost string, port int) string {
	host := bindHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
