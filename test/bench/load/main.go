// Command load measures pod creation through a real kube-apiserver (envtest
// binaries from test/assets) with and without the sidecar injector webhook:
// pods created per second and p50/p99 latency of the create call, plus the
// injector handler's own p50/p99.
//
//	go run ./test/bench/load [-pods 500] [-concurrency 16] [-key-algorithm RSA2048]
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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/injector/injectortest"
	"github.com/flomesh-io/fsm-webhooks/test/assets"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

var apiserverProfile, selfProfile string

func main() {
	pods := flag.Int("pods", 500, "pods to create per run")
	conc := flag.Int("concurrency", 16, "concurrent creates")
	alg := flag.String("key-algorithm", string(certs.RSA2048), "mesh CA and bootstrap key algorithm")
	flag.StringVar(&apiserverProfile, "apiserver-profile", "", "write a CPU profile of kube-apiserver during the run with the injector to this file")
	flag.StringVar(&selfProfile, "profile", "", "write a CPU profile of this process (client and webhook) during the run with the injector to this file")
	flag.Parse()
	keyAlg, err := certs.ParseKeyAlgorithm(*alg)
	if err != nil || *pods < 1 || *conc < 1 {
		fmt.Fprintf(os.Stderr, "load: bad flags: key-algorithm %q (%v), pods %d, concurrency %d\n", *alg, err, *pods, *conc)
		os.Exit(2)
	}
	if err := run(*pods, *conc, keyAlg); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// timedHandler records how long the injector itself takes per admission.
type timedHandler struct {
	admission.Handler
	mu   sync.Mutex
	durs []time.Duration
}

func (t *timedHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp := t.Handler.Handle(ctx, req)
	t.mu.Lock()
	t.durs = append(t.durs, time.Since(start))
	t.mu.Unlock()
	return resp
}

func run(pods, conc int, alg certs.KeyAlgorithm) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Info and quieter: per-admission debug lines would dominate.
	ctrl.SetLogger(zap.New())

	dir, err := assets.Kube(ctx, os.Stderr)
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
	issuer, err := injectortest.NewIssuer(ctx, injectortest.Options{Algorithm: alg, PoolSize: pods + 64})
	if err != nil {
		return err
	}
	certDir, port, err := servingCert(issuer)
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(certDir) }()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme,
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	if err != nil {
		return err
	}
	h, err := injector.NewHandler(injector.Options{
		Client: cl, Namespaces: mgr.GetCache(), Issuer: issuer,
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
	for _, name := range []string{"plain", "meshed"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if name == "meshed" {
			ns.Labels = map[string]string{injector.MonitoredByLabel: "fsm"}
			ns.Annotations = map[string]string{injector.SidecarInjectionAnnotation: "enabled"}
		}
		if err := cl.Create(ctx, ns); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for injector.Probe(ctx, cl, "meshed") != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook never became active: %w", injector.Probe(ctx, cl, "meshed"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	timed.mu.Lock()
	timed.durs = nil
	timed.mu.Unlock()

	fmt.Printf("pods=%d concurrency=%d key=%s GOMAXPROCS=%d\n", pods, conc, alg, goruntime.GOMAXPROCS(0))
	for _, ns := range []string{"plain", "meshed"} {
		var profiled chan error
		if ns == "meshed" && apiserverProfile != "" {
			profiled = make(chan error, 1)
			go func() { profiled <- profileAPIServer(ctx, cfg, apiserverProfile) }()
		}
		if ns == "meshed" && selfProfile != "" {
			f, err := os.Create(selfProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		lat, elapsed, errs := createPods(ctx, cl, ns, pods, conc)
		if ns == "meshed" && selfProfile != "" {
			pprof.StopCPUProfile()
		}
		if profiled != nil {
			if err := <-profiled; err != nil {
				return err
			}
		}
		label := "without webhook"
		if ns == "meshed" {
			label = "with injector   "
		}
		fmt.Printf("%s: %7.1f pods/s  create p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
			label, float64(pods)/elapsed.Seconds(), ms(pct(lat, 50)), ms(pct(lat, 99)), errs)
	}
	timed.mu.Lock()
	defer timed.mu.Unlock()
	fmt.Printf("injector handler: p50 %.2f ms  p99 %.2f ms over %d admissions\n", ms(pct(timed.durs, 50)), ms(pct(timed.durs, 99)), len(timed.durs))
	return nil
}

func createPods(ctx context.Context, cl client.Client, ns string, n, conc int) ([]time.Duration, time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: ns},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
				}
				t := time.Now()
				err := cl.Create(ctx, p)
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs++
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return lat, time.Since(start), errs
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
