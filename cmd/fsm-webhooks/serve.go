package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	configv1alpha1 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	configv1alpha2 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmanager"
	"github.com/flomesh-io/fsm-webhooks/certs/certmetrics"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/internal/transient"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Webhook names accepted by --webhooks.
const (
	hookInjector  = "injector"
	hookValidator = "validator"
	hookConverter = "converter"
)

var allHooks = []string{hookInjector, hookValidator, hookConverter}

type serveFlags struct {
	webhooks           []string
	injectorProbeNS    string
	validateTrafficTgt bool
	strictPolicy       bool
	bindHost           string
	shutdownDrain      time.Duration
	pprofAddr          string
	podIPs             []string
	tlsMinVersion      string
	tlsCipherSuites    []string
	tls                webhooks.TLSPolicy // parsed from the two above by validate
}

func newServeCommand(o *options) *cobra.Command {
	sf := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the selected webhooks (all by default) in one process",
		Long: `serve runs the selected webhooks, each on its own port with its own serving
certificate kept in a Secret of the fsm namespace. Each keeps the caBundle of its
webhook configuration (or of the MeshConfig CRD's conversion stanza) equal to the
mesh CA bundle and repairs it when anyone changes it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.validate(o); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg, err := o.restConfig()
			if err != nil {
				return err
			}
			return serve(ctx, o, sf, cfg, nil)
		},
	}
	cmd.Flags().StringSliceVar(&sf.webhooks, "webhooks", allHooks, "webhooks to serve: any of "+strings.Join(allHooks, ", "))
	cmd.Flags().StringVar(&sf.injectorProbeNS, "injector-probe-namespace", "", "monitored namespace in which /readyz/injector proves injection with a dry-run pod (in the background, never gating the pod); empty disables that probe")
	cmd.Flags().BoolVar(&sf.validateTrafficTgt, "validate-traffic-target", true, "require TrafficTarget namespace to match spec.destination.namespace (FSM)")
	cmd.Flags().BoolVar(&sf.strictPolicy, "strict-policy-validation", false, "deny policy objects that break rules FSM v1.5.1 never enforced (AccessControl, UpstreamTrafficSetting, AccessCert, IngressBackend conflicts and https client-certificate sources); off, they are admitted with a warning")
	cmd.Flags().StringVar(&sf.bindHost, "webhook-bind-host", "", "host the webhook listeners bind (default all interfaces)")
	cmd.Flags().StringVar(&sf.pprofAddr, "pprof-bind-address", "", "address of net/http/pprof's /debug/pprof/ (heap, goroutine, CPU profiles); empty disables. Unauthenticated: bind it to loopback")
	cmd.Flags().StringSliceVar(&sf.podIPs, "pod-ips", nil, "this server's pod IPs, comma-separated (the chart passes status.podIPs through FSM_POD_IPS): in Service mode the converter first publishes the MeshConfig CRD's conversion stanza only once its Service lists one of them as a ready endpoint and a TLS handshake through the Service reaches a converter of ours (at most 30 s more); empty (outside a pod): as soon as the converter serves")
	cmd.Flags().StringVar(&sf.tlsMinVersion, "tls-min-version", "VersionTLS12", "lowest TLS version the webhook listeners accept: VersionTLS12 or VersionTLS13")
	cmd.Flags().StringSliceVar(&sf.tlsCipherSuites, "tls-cipher-suites", nil, "TLS 1.2 cipher suites the webhook listeners accept, comma-separated, as crypto/tls names them (insecure ones refused; not with VersionTLS13, whose suites are fixed); empty: "+strings.Join(cipherSuiteNames(webhooks.DefaultCipherSuites()), ","))
	cmd.Flags().DurationVar(&sf.shutdownDrain, "shutdown-drain", webhooks.DefaultShutdownDrain, "after SIGTERM, how long every listener keeps serving (failing /readyz, closing each connection after its answer) before its graceful shutdown")
	return cmd
}

// validate checks serve's own flags, and those that must not clash with
// o's (validated before).
func (sf *serveFlags) validate(o *options) error {
	if len(sf.webhooks) == 0 {
		return usageErrorf("invalid value \"\" for --webhooks: must name at least one of %s", strings.Join(allHooks, ", "))
	}
	for i, h := range sf.webhooks {
		if !slices.Contains(allHooks, h) {
			return usageErrorf("invalid value %q for --webhooks: must be one of %s", h, strings.Join(allHooks, ", "))
		}
		if slices.Contains(sf.webhooks[:i], h) {
			return usageErrorf("invalid value %q for --webhooks: %s is listed twice", strings.Join(sf.webhooks, ","), h)
		}
	}
	if err := hostFlag("webhook-bind-host", sf.bindHost); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(sf.injectorProbeNS); sf.injectorProbeNS != "" && len(errs) > 0 {
		return usageErrorf("invalid value %q for --injector-probe-namespace: must be a namespace name (lower-case letters, digits, '-'): %s", sf.injectorProbeNS, strings.Join(errs, "; "))
	}
	if ns := sf.injectorProbeNS; ns == o.fsmNamespace || ns == "kube-system" || ns == "kube-public" {
		// The injector never injects these by name (namespaceExcluded): the
		// probe could only ever fail.
		return usageErrorf("invalid value %q for --injector-probe-namespace: the mesh never injects kube-system, kube-public or its own namespace (--fsm-namespace %s): name a namespace labelled %s=%s", ns, o.fsmNamespace, fsmnames.MonitoredByLabel, o.meshName)
	}
	if sf.pprofAddr != "" {
		port, err := bindAddressFlag("pprof-bind-address", sf.pprofAddr, false)
		if err != nil {
			return err
		}
		// Bound by the manager before the other listeners, which then
		// failed to bind after serve had reached the cluster.
		taken, err := o.portOwners()
		if err != nil {
			return err
		}
		if other, ok := taken[port]; ok && port != 0 {
			return usageErrorf("invalid value %q for --pprof-bind-address: port %d is %s's", sf.pprofAddr, port, other)
		}
	}
	if sf.shutdownDrain < 0 {
		return usageErrorf("invalid value %s for --shutdown-drain: must not be negative", sf.shutdownDrain)
	}
	for _, ip := range sf.podIPs {
		if net.ParseIP(ip) == nil {
			return usageErrorf("invalid value %q for --pod-ips: not an IP address", ip)
		}
	}
	return sf.parseTLS()
}

// parseTLS sets sf.tls from --tls-min-version and --tls-cipher-suites.
func (sf *serveFlags) parseTLS() error {
	sf.tls = webhooks.TLSPolicy{}
	if sf.tlsMinVersion != "" {
		v, err := webhooks.ParseTLSVersion(sf.tlsMinVersion)
		if err != nil {
			return usageErrorf("invalid value %q for --tls-min-version: %v", sf.tlsMinVersion, err)
		}
		sf.tls.MinVersion = v
	}
	suites, err := webhooks.ParseCipherSuites(sf.tlsCipherSuites)
	if err != nil {
		return usageErrorf("invalid value %q for --tls-cipher-suites: %v", strings.Join(sf.tlsCipherSuites, ","), err)
	}
	if len(suites) > 0 && sf.tls.MinVersion == tls.VersionTLS13 {
		return usageErrorf("invalid value %q for --tls-cipher-suites: it chooses TLS 1.2 suites, and --tls-min-version is VersionTLS13 (TLS 1.3's suites are fixed)", strings.Join(sf.tlsCipherSuites, ","))
	}
	sf.tls.CipherSuites = suites
	return nil
}

// cipherSuiteNames names suites as crypto/tls does.
func cipherSuiteNames(ids []uint16) []string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = tls.CipherSuiteName(id)
	}
	return names
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// restConfig loads --kubeconfig and --context, or the in-cluster / default
// config (loadRESTConfig).
func (o *options) restConfig() (*rest.Config, error) {
	return loadRESTConfig(o.kubeconfig, o.kubeContext)
}

// clients is the loaded config and a clientset on it, as the one-shot
// certs commands use them.
func (o *options) clients() (*rest.Config, kubernetes.Interface, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cfg, cs, nil
}

// newScheme knows the built-in kinds, CRDs and every MeshConfig version.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(configv1alpha1.AddToScheme(s))
	utilruntime.Must(configv1alpha2.AddToScheme(s))
	utilruntime.Must(configv1alpha3.AddToScheme(s))
	return s
}

// serve wires the selected webhooks and runs them until ctx ends. started,
// when set, is called once the webhook server exists (local uses it to wait
// for readiness).
func serve(ctx context.Context, o *options, sf *serveFlags, cfg *rest.Config, started func(*webhooks.Server)) error {
	log := ctrl.Log.WithName("serve")
	scheme := newScheme()
	// Per-pod work (bootstrap Secret, certificate issuance) on one rate
	// limit, controllers and caches on another (--kube-api-qps and
	// --controller-kube-api-qps).
	admissionCfg, controllerCfg := o.clientConfigs(cfg)
	cs, err := kubernetes.NewForConfig(admissionCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// The key pool serves the listeners through their shutdown drain and the
	// bootstrap Secret flush after it: it stops when serve returns. Stopped
	// at SIGTERM it dropped its keys, and every certificate issued meanwhile
	// (admissions still answered, the flushed Secrets) generated its key
	// inline, RSA by default, on a replica still answering.
	pool, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPool()
	issuer, err := newIssuerWith(ctx, pool, o, admissionCfg, cs, log.WithName("certs"), false)
	if err != nil {
		return err
	}
	if v, ok := issuer.(*vault.Issuer); ok {
		// A token with a TTL would otherwise stop every issuance when it
		// expires, and a Vault CA rotated in --vault-ca-file's Secret (or a
		// client certificate renewed in --vault-client-cert-file's) would be
		// used only after a restart. Started first: the serving
		// certificates are issued during start-up. They live as long as
		// the key pool: the drain and the Secret flush after SIGTERM still
		// issue.
		keepCtx, stopKeeping := context.WithCancel(pool)
		var kept sync.WaitGroup
		kept.Go(func() { v.KeepTokenAlive(keepCtx) })
		kept.Go(func() { v.WatchTLSFiles(keepCtx) })
		defer func() {
			stopKeeping()
			kept.Wait()
		}()
	}
	if cm, ok := issuer.(*certmanager.Issuer); ok {
		// CertificateRequests of a replica killed while waiting for them
		// (SIGKILL, OOM) are deleted by nobody else.
		var swept sync.WaitGroup
		sweepCtx, stopSweeping := context.WithCancel(ctx)
		swept.Go(func() { cm.RunSweeper(sweepCtx) })
		defer func() {
			stopSweeping()
			swept.Wait()
		}()
	}
	defer watchCAMetrics(issuer)()

	mgr, err := newManager(ctx, sf, o, controllerCfg, scheme, log)
	if err != nil {
		return err
	}
	direct, err := client.New(admissionCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	servingKey, err := servingKeyAlgorithm(ctx, o, direct, log.WithName("certs"))
	if err != nil {
		return err
	}
	var hooks []webhooks.Webhook
	for _, name := range sf.webhooks {
		h, err := buildWebhook(ctx, name, o, sf, mgr, direct, issuer, scheme, log)
		if err != nil {
			return err
		}
		hooks = append(hooks, h)
	}
	gatePodReadiness(hooks)
	srv, err := webhooks.New(webhooks.Options{
		Config:                 controllerCfg,
		Namespace:              o.fsmNamespace,
		MeshName:               o.meshName,
		WebhookURLHost:         o.webhookURLHost,
		BindHost:               sf.bindHost,
		Issuer:                 certmetrics.Instrument(issuer),
		ServingKeyAlgorithm:    servingKey,
		MetricsBindAddress:     o.metricsAddr,
		HealthProbeBindAddress: o.healthProbeAddr,
		ShutdownDrain:          sf.shutdownDrain,
		PodIPs:                 sf.podIPs,
		TLS:                    sf.tls,
		Log:                    log.WithName("webhooks"),
	}, hooks)
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	// Built before anything starts: an error here must not leave the
	// listeners' goroutines running.
	var rotation *rootrotation.Options
	if ca, ok := issuer.(*tresor.Issuer); ok && o.rootAutoRotateBefore > 0 && ca.State().Rotation.Managed {
		// Only roots we created (never a bring-your-own root). Every replica
		// runs it: each rotation step is idempotent and
		// guarded by the CA Secret's resourceVersion, and an interrupted
		// rotation (crash, restart) is resumed here.
		ropts, err := rotationOptions(o, controllerCfg, cs, ca)
		if err != nil {
			return err
		}
		ropts.Log = log.WithName("root-rotation")
		// The new root and the serving certificates re-issued from it are
		// signed with this node's clock: ahead of the cluster's, they were
		// not valid there yet and the apiserver refused every webhook call
		// until its clock caught up (TestServeAutoRotationRefusesAClockAhead).
		ropts.ClockCheck = func(ctx context.Context) error {
			return checkClockAgainstAPIServer(ctx, controllerCfg, logLines{ropts.Log}, serveClock)
		}
		rotation = &ropts
	}
	mgrRunning := newPastCaches()
	if err := mgr.Add(mgrRunning); err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	if started != nil {
		started(srv)
	}
	g, gctx := errgroup.WithContext(ctx)
	// The manager, and with it the caches the handlers read, stops only
	// once the listeners are down: they serve on through the shutdown drain,
	// and a cache stopped under them would answer from a frozen view (a
	// namespace created since unknown) or, for a kind not read before, make
	// the admission wait for an informer that never starts.
	mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(gctx))
	defer stopMgr()
	g.Go(func() error {
		defer stopMgr()
		return srv.Start(gctx)
	})
	g.Go(func() error { return runManager(mgrCtx, mgr, mgrRunning, log) })
	if rotation != nil {
		g.Go(func() error { return rootrotation.Auto(gctx, *rotation, o.rootAutoRotateBefore, time.Hour) })
	}
	log.Info("Serving", "webhooks", sf.webhooks, "mesh", o.meshName, "namespace", o.fsmNamespace, "provider", issuer.Provider())
	return g.Wait()
}

// newManager creates the controller manager that runs the caches and
// controllers of the webhooks sf selects. With the injector served its
// cache options make manager.New look kinds up (a discovery request);
// failing with a transient error (the apiserver restarting or overloaded)
// it is retried like the other start-up reads (internal/transient):
// returned at once, it ended serve. Safe to retry: manager.New looks the
// kinds up before it binds its one listener (--pprof-bind-address).
func newManager(ctx context.Context, sf *serveFlags, o *options, cfg *rest.Config, scheme *runtime.Scheme, log logr.Logger) (manager.Manager, error) {
	var mgr manager.Manager
	err := transient.Retry(ctx, log, 0, "creating the controller manager", func(context.Context) (err error) {
		mgr, err = manager.New(cfg, manager.Options{
			Scheme:                 scheme,
			Logger:                 log.WithName("manager"),
			Metrics:                metricsserver.Options{BindAddress: "0"}, // served by the webhooks layer
			HealthProbeBindAddress: "0",
			PprofBindAddress:       sf.pprofAddr,
			Cache:                  cacheOptions(sf.webhooks, o.fsmNamespace),
			// The validator reads the MeshConfig and FSM's policy kinds as
			// unstructured objects; controller-runtime's client reads those
			// live unless told otherwise, so every policy admission would GET
			// or LIST the apiserver (through the controllers' rate limit)
			// while the MeshConfig informer it waits for went unread.
			Client: client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	return mgr, nil
}

// cacheOptions restrict the manager's informers: the injector's pods and
// bootstrap Secrets (metadata only, by label) and FSM's controller Service,
// when the injector is served. Every cached object drops its managedFields:
// nothing here reads them, and with 5000 meshed pods they were 14 MiB of the
// 37 MiB live heap (a pod's and a Secret's metadata each carry one entry
// per writer, larger than the rest of the metadata).
func cacheOptions(served []string, fsmNamespace string) cache.Options {
	byObject := map[client.Object]cache.ByObject{}
	if slices.Contains(served, hookInjector) {
		byObject = injector.CacheByObject()
		maps.Copy(byObject, injector.ControllerServiceCacheByObject(fsmNamespace))
	}
	return cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields(), DefaultWatchErrorHandler: quietNotServed}
}

// quietNotServed is the cache's watch error handler. A list or watch the
// apiserver answers 404 (the kind's CRD deleted: the MeshConfig CRD by hand
// or by another release's uninstall) is retried with client-go's back-off
// as before, but logged at V(1) instead of as an error at every retry (two
// informers, about seven lines a minute): the converter and the injector
// say once that the CRD is missing.
func quietNotServed(ctx context.Context, r *toolscache.Reflector, err error) {
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).V(1).Info("kind not served (its CRD deleted?); retrying", "type", r.TypeDescription(), "err", err.Error())
		return
	}
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
}

// addTrustController keeps the bootstrap Secrets on the mesh's roots
// through a root rotation (tresor's recorded phases name the retiring root).
func addTrustController(o *options, mgr manager.Manager, issuer certs.Issuer, log logr.Logger) error {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("injector: kubernetes client: %w", err)
	}
	// Instrumented as the handler's issuer is: a root rotation's re-issues
	// are certificates the CA issued too (the metric's help says so).
	topts := injector.TrustControllerOptions{Client: cs, Issuer: certmetrics.Instrument(issuer), MeshName: o.meshName, TrustDomain: o.trustDomain,
		BootstrapCertValidity: o.bootstrapValidity, Logger: log.WithName("bootstrap-trust")}
	if ca, ok := issuer.(*tresor.Issuer); ok {
		topts.Rotation = tresor.RotationCA(ca)
	}
	tc, err := injector.NewTrustController(topts)
	if err != nil {
		return err
	}
	if err := mgr.Add(tc); err != nil {
		return fmt.Errorf("injector: %w", err)
	}
	return nil
}

// managerStopWait is how long a stopping serve waits for a controller
// manager still waiting for its caches' first sync. Caches that sync within
// it (a list that was merely slow) start the rest, and serve then waits for
// the manager's whole stop.
const managerStopWait = 5 * time.Second

// pastCaches is a runnable that records that the manager started it, which
// it does, on every replica, once its caches' first sync is over: started
// is closed then.
type pastCaches struct {
	once    sync.Once
	started chan struct{}
}

func newPastCaches() *pastCaches { return &pastCaches{started: make(chan struct{})} }

func (p *pastCaches) Start(context.Context) error { p.once.Do(func() { close(p.started) }); return nil }

// NeedLeaderElection: every replica (a runnable that needs it would start
// only on the leader).
func (*pastCaches) NeedLeaderElection() bool { return false }

// managers counts the controller managers still running, one serve left
// waiting included (its tests wait for it before stopping the apiserver).
var managers sync.WaitGroup

// runManager runs mgr until ctx ends. controller-runtime's manager waits
// for its caches' first sync before starting anything else without watching
// its context (v0.25: runnableGroup.Start loops on the closed Done channel),
// so while the apiserver refuses a list (an outage as the replica starts,
// RBAC that forbids it) a serve asked to stop waited for it until SIGKILL
// came, a core spinning meanwhile. Nothing has started then that needs a
// graceful stop (no controller, no reconcile), so serve stops without it.
func runManager(ctx context.Context, mgr manager.Manager, running *pastCaches, log logr.Logger) error {
	errc := make(chan error, 1)
	managers.Add(1)
	go func() {
		defer managers.Done()
		errc <- mgr.Start(ctx)
	}()
	wrap := func(err error) error {
		if err != nil {
			return fmt.Errorf("controller manager: %w", err)
		}
		return nil
	}
	select {
	case err := <-errc:
		return wrap(err)
	case <-ctx.Done():
	}
	// Caches that sync during the wait start everything after them, the
	// bootstrap Secret writer's shutdown flush (up to 20 s) among them: that
	// stop is waited for whenever they get there, not cut at managerStopWait.
	select {
	case err := <-errc:
		return wrap(err)
	case <-running.started:
		return wrap(<-errc)
	case <-time.After(managerStopWait):
		log.Info("Stopping without the controller manager: it is still waiting for its caches' first sync, which it does not stop doing when asked", "waited", managerStopWait)
		return nil
	}
}

// hookIdentity is everything about a webhook but its handlers: ports,
// Service, serving-cert Secret and the object carrying its caBundle.
func hookIdentity(o *options, name string) webhooks.Webhook {
	switch name {
	case hookInjector:
		return webhooks.Webhook{Name: hookInjector, Port: o.injectorPort, ServiceName: fsmnames.InjectorService, SecretName: fsmnames.InjectorCertSecret,
			Registration: injector.Registration(o.meshName, o.fsmNamespace)}
	case hookValidator:
		return webhooks.Webhook{Name: hookValidator, Port: o.validatorPort, ServiceName: fsmnames.ValidatorService, SecretName: fsmnames.ValidatorCertSecret,
			Registration: validator.Registration(o.meshName, o.fsmNamespace)}
	default:
		return webhooks.Webhook{Name: hookConverter, Port: o.converterPort, ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
			Registration: converter.Registration()}
	}
}

// gatePodReadiness makes the injector alone decide the pod's readiness when
// it is served: its Service losing its endpoints fails every pod create in
// monitored namespaces, so a validator or converter problem (a deleted
// configuration, a failing probe) is reported, never turned into that.
// Without the injector every served webhook gates the pod.
func gatePodReadiness(hooks []webhooks.Webhook) {
	if !slices.ContainsFunc(hooks, func(w webhooks.Webhook) bool { return w.Name == hookInjector }) {
		return
	}
	for i := range hooks {
		hooks[i].ReportOnly = hooks[i].Name != hookInjector
	}
}

// hookIdentities are all three webhooks (for rotate-root).
func hookIdentities(o *options) []webhooks.Webhook { return servedIdentities(o, allHooks) }

// servedIdentities are the named webhooks (for certs status: those the
// servers serve).
func servedIdentities(o *options, names []string) []webhooks.Webhook {
	out := make([]webhooks.Webhook, 0, len(names))
	for _, name := range names {
		out = append(out, hookIdentity(o, name))
	}
	return out
}

// apiserverVersion is the apiserver's gitVersion (GET /version, which every
// client may read), or "" when it cannot be read within 10 s: the injector
// then lets native mode through as before, and the log says why.
func apiserverVersion(cfg *rest.Config, log logr.Logger) string {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err == nil {
		var v *version.Info
		if v, err = dc.ServerVersion(); err == nil {
			return v.GitVersion
		}
	}
	log.Error(err, "reading the apiserver's version (GET /version): pods asking for native sidecars are injected whatever it is")
	return ""
}

// buildWebhook adds the handlers and readiness probe to a webhook.
func buildWebhook(ctx context.Context, name string, o *options, sf *serveFlags, mgr manager.Manager, direct client.Client,
	issuer certs.Issuer, scheme *runtime.Scheme, log logr.Logger) (webhooks.Webhook, error) {
	w := hookIdentity(o, name)
	switch name {
	case hookInjector:
		// A Runnable too: a MeshConfig the injector cannot apply is reported
		// (log, metric, Event) when stored, not at the next pod.
		meshConfig := &injector.CachedMeshConfig{Reader: mgr.GetCache(), Namespace: o.fsmNamespace, Name: fsmnames.MeshConfigName,
			Logger: log.WithName("injector"), Recorder: mgr.GetEventRecorder("fsm-injector")}
		if err := mgr.Add(meshConfig); err != nil {
			return w, fmt.Errorf("injector: %w", err)
		}
		// Both writers hand Secrets to the writer controller: every one
		// (controller), or those the apiserver is too busy for (admission).
		pending := injector.NewPendingSecrets(0)
		// Its informers are registered once the manager runs, and neither
		// the manager nor readiness waits for them: without them (not
		// synced yet, or RBAC that does not grant them) pods are injected
		// unchecked.
		limits := injector.NewCachedLimits(mgr.GetCache())
		if err := mgr.Add(limits); err != nil {
			return w, fmt.Errorf("injector: %w", err)
		}
		h, err := injector.NewHandler(injector.Options{
			Client:                direct,
			Pods:                  mgr.GetCache(),
			Pending:               pending,
			SecretWriter:          injector.SecretWriter(o.bootstrapSecretWriter),
			Handoff:               injector.SecretHandoff{InFlight: o.handoffInFlight, Budget: o.handoffBudget},
			Namespaces:            mgr.GetClient(),
			Services:              mgr.GetClient(),
			Limits:                limits,
			MeshConfig:            meshConfig,
			NamespaceLimit:        injector.NamespaceLimit{PerSecond: o.injectorNamespaceRate, Burst: o.injectorNamespaceBurst},
			MaxInFlight:           o.injectorMaxInFlight,
			Issuer:                certmetrics.Instrument(issuer),
			MeshName:              o.meshName,
			FSMNamespace:          o.fsmNamespace,
			TrustDomain:           o.trustDomain,
			ClusterDomain:         o.clusterDomain,
			SidecarImage:          o.sidecarImage,
			InitImage:             o.initImage,
			HealthcheckImage:      o.healthcheckImage,
			ContainerPullPolicy:   corev1.PullPolicy(o.containerPullPolicy),
			BootstrapCertValidity: o.bootstrapValidity,
			BootstrapKeyAlgorithm: o.bootstrapKeyAlgorithm(),
			KubeVersion:           apiserverVersion(mgr.GetConfig(), log.WithName("injector")),
			Logger:                log.WithName("injector"),
			Recorder:              mgr.GetEventRecorder("fsm-injector"),
		})
		// The injector package's errors already begin "injector:".
		if err != nil {
			return w, err
		}
		// A deleted namespace's rate-limited series and bucket go with it.
		if err := h.ForgetDeletedNamespaces(ctx, mgr.GetCache()); err != nil {
			return w, err
		}
		// One cache of finished pods: the cleanup deletes their Secrets,
		// and the writer's repair leaves them without one.
		finished, err := injector.NewFinishedPods(mgr)
		if err != nil {
			return w, err
		}
		if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{
			MeshName: o.meshName, Finished: finished, Logger: log.WithName("bootstrap-secrets"),
		}); err != nil {
			return w, err
		}
		if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, Finished: finished, Logger: log.WithName("bootstrap-writer")}); err != nil {
			return w, err
		}
		if err := addTrustController(o, mgr, issuer, log); err != nil {
			return w, err
		}
		w.Handlers = map[string]http.Handler{w.Registration.Path: reviewhttp.NewAdmission(h).Named(w.Name)}
		if w.Synced, err = webhooks.CachesSynced(ctx, mgr.GetCache(), log.WithName("injector"), injector.HandlerCaches()...); err != nil {
			return w, fmt.Errorf("injector: %w", err)
		}
		if ns := sf.injectorProbeNS; ns != "" {
			mesh := injector.Mesh{Name: o.meshName, FSMNamespace: o.fsmNamespace}
			w.Probe = func(ctx context.Context) error { return injector.Probe(ctx, direct, mesh, ns) }
		}
	case hookValidator:
		h := validator.NewHandler(validator.Options{
			Reader:                 mgr.GetClient(),
			MeshName:               o.meshName,
			FSMNamespace:           o.fsmNamespace,
			MeshConfigName:         fsmnames.MeshConfigName,
			ValidateTrafficTarget:  sf.validateTrafficTgt,
			StrictPolicyValidation: sf.strictPolicy,
			Logger:                 log.WithName("validator"),
		})
		w.Handlers = map[string]http.Handler{w.Registration.Path: reviewhttp.NewAdmission(h).Named(w.Name)}
		var err error
		if w.Synced, err = webhooks.CachesSynced(ctx, mgr.GetCache(), log.WithName("validator"), validator.HandlerCaches()...); err != nil {
			return w, fmt.Errorf("validator: %w", err)
		}
		w.Probe = func(ctx context.Context) error {
			return validator.Probe(ctx, direct, o.fsmNamespace, fsmnames.MeshConfigName)
		}
	case hookConverter:
		w.Handlers = map[string]http.Handler{w.Registration.Path: reviewhttp.NewConversion(
			converter.NewHandler(scheme, configv1alpha3.GroupVersion.Group, log.WithName("converter"))).Named(w.Name)}
	}
	return w, nil
}
