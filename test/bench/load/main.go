// Command load measures pod creation through a real kube-apiserver (envtest
// binaries from internal/kubeassets) with and without the sidecar injector webhook:
// pods created per second and p50/p99 latency of the create call, plus the
// injector handler's own p50/p99. Closed loop (-concurrency workers, as fast
// as the apiserver goes) measures throughput; open loop (-rate) measures
// latency at a given arrival rate, free of the queueing a saturated closed
// loop adds to every request.
//
//	go run ./test/bench/load [-pods 500] [-concurrency 16 | -rate 100] [-key-algorithm RSA2048]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/injector/injectortest"
	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// config is the command line.
type config struct {
	pods, conc       int
	rate             float64
	alg              certs.KeyAlgorithm
	apiserverProfile string
	selfProfile      string
}

func main() {
	var c config
	flag.IntVar(&c.pods, "pods", 500, "pods to create per phase")
	flag.IntVar(&c.conc, "concurrency", 16, "concurrent creates (closed loop: as fast as the apiserver takes them)")
	flag.Float64Var(&c.rate, "rate", 0, "open loop instead: start this many creates per second whatever the latency (0: closed loop)")
	alg := flag.String("key-algorithm", string(certs.RSA2048), "mesh CA and bootstrap key algorithm")
	flag.StringVar(&c.apiserverProfile, "apiserver-profile", "", "write a CPU profile of kube-apiserver during the phase with the injector to this file")
	flag.StringVar(&c.selfProfile, "profile", "", "write a CPU profile of this process (client and webhook) during the phase with the injector to this file")
	flag.Parse()
	keyAlg, err := certs.ParseKeyAlgorithm(*alg)
	if err != nil || c.pods < 1 || c.conc < 1 || c.rate < 0 {
		fmt.Fprintf(os.Stderr, "load: bad flags: key-algorithm %q (%v), pods %d, concurrency %d, rate %g\n", *alg, err, c.pods, c.conc, c.rate)
		os.Exit(2)
	}
	c.alg = keyAlg
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// timedHandler records how long the injector takes per admission, and how
// much of that was the bootstrap Secret's write to the apiserver (writeTimer
// adds it up through the request context).
type timedHandler struct {
	admission.Handler
	mu     sync.Mutex
	total  []time.Duration
	writes []time.Duration
}

type writeTimeKey struct{}

func (t *timedHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	var write time.Duration
	start := time.Now()
	resp := t.Handler.Handle(context.WithValue(ctx, writeTimeKey{}, &write), req)
	d := time.Since(start)
	t.mu.Lock()
	t.total = append(t.total, d)
	t.writes = append(t.writes, write)
	t.mu.Unlock()
	return resp
}

func (t *timedHandler) take() (total, withoutWrite []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	total = t.total
	for i, d := range t.total {
		withoutWrite = append(withoutWrite, d-t.writes[i])
	}
	t.total, t.writes = nil, nil
	return total, withoutWrite
}

// writeTimer wraps the injector's client so each create's duration is added
// to the admission it belongs to.
func writeTimer(c client.WithWatch) client.Client {
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			start := time.Now()
			err := c.Create(ctx, obj, opts...)
			if d, ok := ctx.Value(writeTimeKey{}).(*time.Duration); ok {
				*d += time.Since(start)
			}
			return err
		},
	})
}

// The phases, each in its own namespace: pods alone; a pod plus a Secret of
// a bootstrap Secret's size created by the client (the apiserver work any
// injector that writes a Secret per pod cannot avoid); pods through the
// injector, which writes the Secret itself and adopts it afterwards.
const (
	nsPlain  = "plain"
	nsSecret = "plain-secret"
	nsMeshed = "meshed"
)

func run(c config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Info and quieter: per-admission debug lines would dominate.
	ctrl.SetLogger(zap.New())

	dir, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		return err
	}
	// The machine may be busy: give the control plane time to come up.
	env := &envtest.Environment{BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 3 * time.Minute}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting apiserver: %w", err)
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.Timeout = time.Minute

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	issuer, err := injectortest.NewIssuer(ctx, injectortest.Options{Algorithm: c.alg, PoolSize: c.pods + 64})
	if err != nil {
		return err
	}
	certDir, port, err := servingCert(issuer)
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(certDir) }()
	// As serve runs it: caches restricted to meshed pods and bootstrap
	// Secrets, and the controller that adopts each Secret once its pod exists.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme,
		Cache:         cache.Options{ByObject: injector.CacheByObject()},
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	if err != nil {
		return err
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: "fsm"}); err != nil {
		return err
	}
	// The webhook gets its own client, as in a cluster where it is another
	// process: its Secret writes must not queue behind the load generator's
	// pod creates on one HTTP/2 connection.
	webhookClient, err := client.NewWithWatch(rest.CopyConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	h, err := injector.NewHandler(injector.Options{
		Client: writeTimer(webhookClient), Namespaces: mgr.GetCache(), Issuer: issuer,
		MeshName: "fsm", FSMNamespace: "fsm-system",
		SidecarImage: "flomesh/pipy:1.5.14", InitImage: "flomesh/fsm-sidecar-init:1.5.1", HealthcheckImage: "flomesh/fsm-healthcheck:1.5.1",
	})
	if err != nil {
		return err
	}
	timed := &timedHandler{Handler: h}
	mgr.GetWebhookServer().Register("/mutate-pod-creation", reviewhttp.NewAdmission(timed))
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("manager cache did not sync")
	}
	if err := mgr.GetCache().Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{}); err != nil {
		return err
	}
	bundle, _ := issuer.CABundle(ctx)
	if err := register(ctx, cl, port, bundle); err != nil {
		return err
	}
	for _, name := range []string{nsPlain, nsSecret, nsMeshed} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if name == nsMeshed {
			ns.Labels = map[string]string{injector.MonitoredByLabel: "fsm"}
			ns.Annotations = map[string]string{injector.SidecarInjectionAnnotation: "enabled"}
		}
		if err := cl.Create(ctx, ns); err != nil {
			return err
		}
	}
	template, err := warmUp(ctx, cl)
	if err != nil {
		return err
	}
	timed.take()

	mode := fmt.Sprintf("closed loop, %d concurrent", c.conc)
	if c.rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f creates/s started", c.rate)
	}
	fmt.Printf("pods=%d per phase, %s, key=%s, GOMAXPROCS=%d\n", c.pods, mode, c.alg, goruntime.GOMAXPROCS(0))
	for _, ns := range []string{nsPlain, nsSecret, nsMeshed} {
		stop, err := startProfiles(ctx, c, cfg, ns == nsMeshed)
		if err != nil {
			return err
		}
		res := createPods(ctx, cl, ns, c, template)
		if err := stop(); err != nil {
			return err
		}
		label := map[string]string{nsPlain: "pods only, no webhook      ", nsSecret: "pod + Secret by the client ", nsMeshed: "pods through the injector  "}[ns]
		fmt.Printf("%s: %7.1f pods/s  create p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
			label, float64(c.pods)/res.elapsed.Seconds(), ms(pct(res.lat, 50)), ms(pct(res.lat, 99)), res.errs)
	}
	total, own := timed.take()
	fmt.Printf("injector handler: p50 %.2f ms  p99 %.2f ms over %d admissions; without its Secret write: p50 %.2f ms  p99 %.2f ms\n",
		ms(pct(total, 50)), ms(pct(total, 99)), len(total), ms(pct(own, 50)), ms(pct(own, 99)))
	return nil
}

// warmUp creates one pod through the injector, proving the webhook is
// active, and returns its bootstrap Secret's data as the template for the
// client-created Secrets.
func warmUp(ctx context.Context, cl client.Client) (map[string][]byte, error) {
	deadline := time.Now().Add(30 * time.Second)
	for injector.Probe(ctx, cl, nsMeshed) != nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("webhook never became active: %w", injector.Probe(ctx, cl, nsMeshed))
		}
		time.Sleep(200 * time.Millisecond)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "warm-up", Namespace: nsMeshed},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if err := cl.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("warm-up pod: %w", err)
	}
	var secrets corev1.SecretList
	if err := cl.List(ctx, &secrets, client.InNamespace(nsMeshed), client.MatchingLabels{injector.ProxyUUIDLabel: pod.Labels[injector.ProxyUUIDLabel]}); err != nil {
		return nil, err
	}
	if len(secrets.Items) != 1 {
		return nil, fmt.Errorf("warm-up pod has %d bootstrap Secrets, want 1", len(secrets.Items))
	}
	return secrets.Items[0].Data, nil
}

// startProfiles starts the CPU profiles asked for when on is set; stop waits
// for them.
func startProfiles(ctx context.Context, c config, cfg *rest.Config, on bool) (stop func() error, err error) {
	var apiserver chan error
	if on && c.apiserverProfile != "" {
		apiserver = make(chan error, 1)
		go func() { apiserver <- profileAPIServer(ctx, cfg, c.apiserverProfile) }()
	}
	self := on && c.selfProfile != ""
	if self {
		f, err := os.Create(c.selfProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	return func() error {
		if self {
			pprof.StopCPUProfile()
		}
		if apiserver != nil {
			return <-apiserver
		}
		return nil
	}, nil
}

type result struct {
	lat     []time.Duration
	elapsed time.Duration
	errs    int
}

// createPods creates c.pods pods in ns, closed loop (c.conc workers) or open
// loop (c.rate starts per second). In ns nsSecret each pod's Secret is
// created first, as the injector does.
func createPods(ctx context.Context, cl client.Client, ns string, c config, secretData map[string][]byte) result {
	var mu sync.Mutex
	var res result
	one := func(i int) {
		t := time.Now()
		var err error
		if ns == nsSecret {
			err = cl.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d", i), Namespace: ns}, Data: secretData})
		}
		if err == nil {
			err = cl.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: ns},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			})
		}
		d := time.Since(t)
		mu.Lock()
		res.lat = append(res.lat, d)
		if err != nil {
			res.errs++
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	if c.rate > 0 {
		interval := time.Duration(float64(time.Second) / c.rate)
		for i := range c.pods {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
			wg.Go(func() { one(i) })
		}
	} else {
		jobs := make(chan int)
		for range c.conc {
			wg.Go(func() {
				for i := range jobs {
					one(i)
				}
			})
		}
		for i := range c.pods {
			jobs <- i
		}
		close(jobs)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func servingCert(issuer *injectortest.Issuer) (string, int, error) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		return "", 0, err
	}
	c, err := issuer.Authority().Issue(certs.Request{
		CommonName: "127.0.0.1", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour, Usage: certs.UsageServer,
	}, key, nil, time.Now())
	if err != nil {
		return "", 0, err
	}
	dir, err := os.MkdirTemp("", "fsm-load-")
	if err != nil {
		return "", 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), c.CertPEM, 0o600); err != nil {
		return "", 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), c.KeyPEM, 0o600); err != nil {
		return "", 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return dir, port, l.Close()
}

func register(ctx context.Context, cl client.Client, port int, bundle []byte) error {
	return cl.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhook-fsm"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "fsm-inject.k8s.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL: ptr.To(fmt.Sprintf("https://127.0.0.1:%d/mutate-pod-creation", port)), CABundle: bundle,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(20)),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{injector.MonitoredByLabel: "fsm"}},
		}},
	})
}

// profileAPIServer saves a 5-second CPU profile of kube-apiserver (its
// /debug/pprof endpoint; envtest's admin user may read it).
func profileAPIServer(ctx context.Context, cfg *rest.Config, path string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "5").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("apiserver profile: %w", err)
	}
	return os.WriteFile(path, raw, 0o600)
}
