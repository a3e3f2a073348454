// Command load measures pod creation through a real kube-apiserver (envtest
// binaries from internal/kubeassets) with and without the sidecar injector:
// pods created per second, p50/p99 of the create call, and the reasons of
// failed creates. Closed loop (-concurrency workers, as fast as the
// apiserver goes) measures throughput; open loop (-rate) measures latency at
// a given arrival rate, free of the queueing a saturated closed loop adds to
// every request.
//
// The injector is the real `fsm-webhooks serve` process, built from this
// checkout (or -binary) and run against the apiserver with its shipped
// defaults, so the figures are what users get; every setting that differs
// (-key-algorithm, -serve-args) is printed with them. -in-process runs the
// handler inside this tool instead, with a pre-filled key pool and an
// unthrottled client: not what ships, but it splits the handler's time into
// its Secret write and its own work.
//
//	go run ./test/bench/load [-pods 500] [-concurrency 16 | -rate 100] [-key-algorithm RSA2048]
//	    [-phases plain,secret,meshed] [-serve-args '--key-pool-size=2064'] [-in-process]
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// The phases, each in its own namespace: pods alone; a pod plus a Secret of
// a bootstrap Secret's size created by the client (the apiserver work any
// injector that writes a Secret per pod cannot avoid); pods through the
// injector, which writes the Secret itself and adopts it afterwards.
const (
	nsPlain  = "plain"
	nsSecret = "plain-secret"
	nsMeshed = "meshed"
)

var phaseNames = map[string]string{"plain": nsPlain, "secret": nsSecret, "meshed": nsMeshed}

// The mesh as the chart installs it.
const (
	fsmNamespace     = "fsm-system"
	chartCertKeyBits = 2048 // fsm.certificateProvider.certKeyBitSize
)

// config is the command line.
type config struct {
	pods, conc       int
	meshedPods       int
	certKeyBits      int
	rate             float64
	alg              certs.KeyAlgorithm
	phases           []string // namespaces, in order
	inProcess        bool
	binary           string
	serveLog         string
	serveArgs        []string
	window           time.Duration
	apiserverProfile string
	selfProfile      string
}

// injectorUnderTest is serve or the in-process handler.
type injectorUnderTest interface {
	label() string
	// measure starts measuring a phase; the function it returns reports it.
	measure(ctx context.Context) (func(elapsed time.Duration) string, error)
	stop() error
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.IntVar(&c.pods, "pods", 500, "pods to create per phase")
	fs.IntVar(&c.meshedPods, "meshed-pods", 0, "pods to create in the phase through the injector (default: -pods)")
	fs.IntVar(&c.certKeyBits, "cert-key-bit-size", chartCertKeyBits, "MeshConfig spec.certificate.certKeyBitSize, the RSA size of bootstrap keys whatever the CA's algorithm (the chart's and FSM's default); 0 leaves it unset, so bootstrap keys follow -key-algorithm")
	fs.IntVar(&c.conc, "concurrency", 16, "concurrent creates (closed loop: as fast as the apiserver takes them)")
	fs.Float64Var(&c.rate, "rate", 0, "open loop instead: start this many creates per second whatever the latency (0: closed loop)")
	alg := fs.String("key-algorithm", string(certs.DefaultKeyAlgorithm), "mesh CA and bootstrap key algorithm (serve's --ca-key-algorithm; the default is serve's)")
	phases := fs.String("phases", "plain,secret,meshed", "phases to run, in order: plain (pods only), secret (pod + Secret by the client), meshed (through the injector)")
	fs.BoolVar(&c.inProcess, "in-process", false, "run the injector handler in this process (pre-filled key pool, unthrottled client: NOT what ships) instead of `fsm-webhooks serve`")
	fs.StringVar(&c.binary, "binary", "", "fsm-webhooks binary to run (default: build cmd/fsm-webhooks from this checkout)")
	fs.StringVar(&c.serveLog, "serve-log", "", "write serve's log to this file (default: a temporary file removed at the end)")
	serveArgs := fs.String("serve-args", "", "extra serve flags, space-separated (printed next to every figure as non-default settings)")
	fs.DurationVar(&c.window, "window", 30*time.Second, "open loop: also report p50/p99 per window of this length (phases of at least two windows)")
	fs.StringVar(&c.apiserverProfile, "apiserver-profile", "", "write a 5 s CPU profile of kube-apiserver during the phase through the injector to this file")
	fs.StringVar(&c.selfProfile, "profile", "", "with -in-process: write a CPU profile of this process (client and webhook) during the phase through the injector to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.alg, err = certs.ParseKeyAlgorithm(*alg); err != nil {
		return c, fmt.Errorf("-key-algorithm: %w", err)
	}
	c.meshedPods = cmp.Or(c.meshedPods, c.pods)
	if c.pods < 1 || c.meshedPods < 1 || c.conc < 1 || c.rate < 0 || c.certKeyBits < 0 {
		return c, fmt.Errorf("bad flags: pods %d, meshed-pods %d and concurrency %d must be positive, rate %g and cert-key-bit-size %d must not be negative",
			c.pods, c.meshedPods, c.conc, c.rate, c.certKeyBits)
	}
	for _, p := range strings.Split(*phases, ",") {
		ns, ok := phaseNames[strings.TrimSpace(p)]
		if !ok || slices.Contains(c.phases, ns) {
			return c, fmt.Errorf("-phases %q: each of plain, secret, meshed at most once", *phases)
		}
		c.phases = append(c.phases, ns)
	}
	c.serveArgs = strings.Fields(*serveArgs)
	if c.inProcess && (c.binary != "" || c.serveLog != "" || len(c.serveArgs) > 0) {
		return c, errors.New("-binary, -serve-log and -serve-args configure serve; -in-process runs no serve")
	}
	if !c.inProcess && c.selfProfile != "" {
		return c, errors.New("-profile profiles this process, which only holds the injector with -in-process (serve exposes no pprof)")
	}
	return c, nil
}

func run(c config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Info and quieter: per-admission debug lines would dominate.
	ctrl.SetLogger(zap.New())
	fmt.Println(machine())

	dir, err := os.MkdirTemp("", "fsm-load-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := c.binary
	if !c.inProcess && bin == "" {
		if bin, err = buildServe(ctx, dir); err != nil {
			return err
		}
	}
	assets, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		return err
	}
	crds, err := chart.CRDs()
	if err != nil {
		return err
	}
	// The machine may be busy: give the control plane time to come up.
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: crds, ControlPlaneStartTimeout: 3 * time.Minute}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting apiserver: %w", err)
	}
	defer func() { _ = env.Stop() }()
	// The load generator's own client must not be what limits the load.
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.Timeout = time.Minute

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := configv1alpha3.AddToScheme(scheme); err != nil {
		return err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := installMesh(ctx, cl, c.certKeyBits); err != nil {
		return err
	}

	var hook injectorUnderTest
	if c.inProcess {
		hook, err = startInProcess(ctx, cfg, scheme, cl, c)
	} else {
		var kubeconfig string
		if kubeconfig, err = writeKubeconfig(env, dir); err == nil {
			hook, err = startServe(ctx, bin, kubeconfig, dir, c)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := hook.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
		}
	}()

	for _, name := range []string{nsPlain, nsSecret, nsMeshed} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if name == nsMeshed {
			ns.Labels = map[string]string{fsmnames.MonitoredByLabel: "fsm"}
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

	mode := fmt.Sprintf("closed loop, %d concurrent", c.conc)
	if c.rate > 0 {
		mode = fmt.Sprintf("open loop, %g creates/s started (%.0f s per phase)", c.rate, float64(c.pods)/c.rate)
	}
	pods := strconv.Itoa(c.pods)
	if c.meshedPods != c.pods {
		pods += fmt.Sprintf(" (%d through the injector)", c.meshedPods)
	}
	keyBits := "bootstrap keys RSA-" + strconv.Itoa(c.certKeyBits) + " (MeshConfig certKeyBitSize, as the chart sets it)"
	switch {
	case c.inProcess:
		keyBits = "bootstrap keys follow the CA (the in-process handler reads no MeshConfig)"
	case c.certKeyBits == 0:
		keyBits = "NON-DEFAULT: MeshConfig certKeyBitSize unset, so bootstrap keys follow the CA"
	case c.certKeyBits != chartCertKeyBits:
		keyBits = "NON-DEFAULT: " + keyBits
	}
	fmt.Printf("pods=%s per phase, %s, CA key=%s, %s, load generator GOMAXPROCS=%d\n%s\n", pods, mode, c.alg, keyBits, goruntime.GOMAXPROCS(0), hook.label())
	for _, ns := range c.phases {
		meshed := ns == nsMeshed
		stopProfiles, err := startProfiles(ctx, c, cfg, meshed)
		if err != nil {
			return err
		}
		var report func(time.Duration) string
		if meshed {
			if report, err = hook.measure(ctx); err != nil {
				return err
			}
		}
		n := c.pods
		if meshed {
			n = c.meshedPods
		}
		res := createPods(ctx, cl, ns, n, c, template)
		end := time.Now()
		if err := stopProfiles(); err != nil {
			return err
		}
		printPhase(ns, c, res)
		if meshed {
			fmt.Println("  " + report(res.elapsed))
			fmt.Println("  " + adoption(ctx, cl, end))
		}
	}
	fmt.Println(loadAverage("at the end"))
	return nil
}

// installMesh creates what the chart installs before the servers start: the
// fsm namespace and the default MeshConfig, with certKeyBitSize bits (0:
// unset).
func installMesh(ctx context.Context, cl client.Client, certKeyBits int) error {
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	mc, err := validator.BaseMeshConfig(fsmNamespace, fsmnames.MeshConfigName)
	if err != nil {
		return err
	}
	path := []string{"spec", "certificate", "certKeyBitSize"}
	if certKeyBits == 0 {
		unstructured.RemoveNestedField(mc.Object, path...)
	} else if err := unstructured.SetNestedField(mc.Object, int64(certKeyBits), path...); err != nil {
		return err
	}
	return cl.Create(ctx, mc)
}

// writeKubeconfig writes an admin kubeconfig for serve (a user of its own,
// so its requests are told apart in the apiserver's logs).
func writeKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "fsm-webhooks", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating serve's user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := dir + "/kubeconfig"
	return path, os.WriteFile(path, kc, 0o600)
}

func printPhase(ns string, c config, res result) {
	label := map[string]string{nsPlain: "pods only, no webhook      ", nsSecret: "pod + Secret by the client ", nsMeshed: "pods through the injector  "}[ns]
	lat := latencies(res.calls)
	errs := 0
	for _, cl := range res.calls {
		if cl.err != nil {
			errs++
		}
	}
	fmt.Printf("%s: %7.1f pods/s  create p50 %6.2f ms  p99 %6.2f ms  errors %d (%.1f%%)\n",
		label, float64(len(res.calls))/res.elapsed.Seconds(), ms(pct(lat, 50)), ms(pct(lat, 99)), errs, 100*float64(errs)/float64(len(res.calls)))
	for _, e := range errorSummary(res.calls, 3) {
		fmt.Println("  error: " + e)
	}
	if ws := windows(res.calls, c.window); c.rate > 0 && len(ws) > 1 {
		for _, w := range ws {
			fmt.Printf("  started %4.0f-%4.0f s: %5d creates  p50 %6.2f ms  p99 %7.2f ms  errors %d\n",
				w.from.Seconds(), (w.from + c.window).Seconds(), w.n, ms(w.p50), ms(w.p99), w.errs)
		}
	}
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

// adoption reports how long after the last create every bootstrap Secret of
// the meshed phase is owned by its pod (the controllers' share of the work,
// done outside the admissions).
func adoption(ctx context.Context, cl client.Client, lastCreate time.Time) string {
	const limit = time.Minute
	var owned, total int
	for {
		var list metav1.PartialObjectMetadataList
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		if err := cl.List(ctx, &list, client.InNamespace(nsMeshed), client.HasLabels{injector.ProxyUUIDLabel}); err != nil {
			return fmt.Sprintf("bootstrap Secret adoption: listing failed: %v", err)
		}
		owned, total = 0, len(list.Items)
		for _, s := range list.Items {
			if len(s.OwnerReferences) > 0 {
				owned++
			}
		}
		if owned == total || time.Since(lastCreate) > limit {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if owned < total {
		return fmt.Sprintf("bootstrap Secrets owned by their pod: %d of %d after %s", owned, total, limit)
	}
	return fmt.Sprintf("bootstrap Secrets owned by their pod: all %d, %.1f s after the last create returned", total, time.Since(lastCreate).Seconds())
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
	calls   []call
	elapsed time.Duration
}

// createPods creates n pods in ns, closed loop (c.conc workers) or open
// loop (c.rate starts per second). In ns nsSecret each pod's Secret is
// created first, as the injector does.
func createPods(ctx context.Context, cl client.Client, ns string, n int, c config, secretData map[string][]byte) result {
	var mu sync.Mutex
	var res result
	start := time.Now()
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
		res.calls = append(res.calls, call{at: t.Sub(start), took: d, err: err})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	if c.rate > 0 {
		interval := time.Duration(float64(time.Second) / c.rate)
		for i := range n {
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
		for i := range n {
			jobs <- i
		}
		close(jobs)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// machine describes where the figures come from: date, CPUs, load.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs (%s), %s, %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"), goruntime.NumCPU(), model, goruntime.Version(), loadAverage("at the start"))
}

func loadAverage(when string) string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return fmt.Sprintf("load average %s %s %s (1/5/15 min) %s", f[0], f[1], f[2], when)
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
