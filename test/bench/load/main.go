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
// Two baselines go through a mutating webhook in this process, each
// against a pod + bootstrap-sized Secret written by the client: noop answers
// one label (what any webhook costs), sized answers the injector's own patch
// for the pod, computed once with the meshed phase's settings (sidecar, init
// container, bootstrap volume: the floor for any injector on this
// apiserver, no certificate, nothing cached). Closed-loop rates are compared
// with the phases before them.
//
// A meshed pod is ready for its kubelet once its bootstrap Secret is stored
// too: with serve's --bootstrap-secret-writer=controller that is after the
// create returned, so every meshed phase watches the Secrets and waits for
// them. A closed loop reports pods with their Secret per second (the clock
// stops at the last Secret; the figure compared with the pod + Secret
// phase), an open loop each pod's create return to Secret seen and the pods
// still without one a few seconds after the phase.
//
// Modes (-mode): throughput (the default: closed or open loop, phase by
// phase; with -rate and -duration, the steady state), writes (the
// apiserver's writes per pod over its life: create, then delete and wait for
// the bootstrap Secret to go), memory (serve's RSS with -prefill meshed pods
// cached, under open-loop admissions; -soak for the curve over a long run),
// startup (serve's start to ready from nothing, then restarted against the
// same apiserver).
//
//	go run ./test/bench/load [-mode throughput|writes|memory|startup] [-pods 500]
//	    [-concurrency 16 | -rate 100 [-duration 10m]] [-key-algorithm RSA2048]
//	    [-phases plain,secret,noop,sized,meshed] [-serve-args '--key-pool-size=2064'] [-in-process]
//	    [-namespaces 4] [-churn [-keep 5000]] [-prefill 5000] [-soak 10m] [-restarts 3]
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
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
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/bench/benchenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// The phases, each in its own namespace: pods alone; a pod plus a Secret of
// a bootstrap Secret's size created by the client (the apiserver work any
// injector that writes a Secret per pod cannot avoid); the same through a
// no-op mutating webhook (what any webhook costs the apiserver); the same
// through a webhook answering the injector's patch (what any injector costs
// it: the injected pod's size too); pods through the injector, which writes
// the Secret itself.
const (
	nsPlain  = "plain"
	nsSecret = "plain-secret"
	nsNoop   = "noop-secret"
	nsSized  = "sized-secret"
	nsMeshed = "meshed"
)

var phaseNames = map[string]string{"plain": nsPlain, "secret": nsSecret, "noop": nsNoop, "sized": nsSized, "meshed": nsMeshed}

// The mesh as the chart installs it.
const (
	fsmNamespace     = "fsm-system"
	chartCertKeyBits = 2048 // fsm.certificateProvider.certKeyBitSize
)

// chartMesh is the mesh as the chart installs it, which the readiness probe
// checks its namespace against.
var chartMesh = injector.Mesh{Name: "fsm", FSMNamespace: fsmNamespace}

// Modes.
const (
	modeThroughput = "throughput"
	modeWrites     = "writes"
	modeMemory     = "memory"
	modeStartup    = "startup"
)

// config is the command line.
type config struct {
	mode             string
	pods, conc       int
	duration         time.Duration
	prefill          int
	churn            bool
	writesWait, idle time.Duration
	restarts         int
	spread           int
	keep             int
	meshedPods       int
	certKeyBits      int
	rate             float64
	alg              certs.KeyAlgorithm
	phases           []string // namespaces, in order
	inProcess        bool
	binary           string
	serveLog         string
	serveArgs        []string
	serveCPU         int // -1: no pinning
	// writer writes the bootstrap Secrets (serve's
	// --bootstrap-secret-writer); writerText says so in the banner.
	writer           injector.SecretWriter
	writerText       string
	window           time.Duration
	apiserverProfile string
	selfProfile      string
}

// injectorUnderTest is serve or the in-process handler.
type injectorUnderTest interface {
	label() string
	// regime tags every figure: shipped settings, or what differs (a
	// pre-filled pool is a burst).
	regime() string
	// measure starts measuring a phase; the function it returns reports it.
	measure(ctx context.Context) (func(result) []string, error)
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
	fs.StringVar(&c.mode, "mode", modeThroughput, "throughput (phases side by side), writes (apiserver writes per pod over its life), memory (serve's RSS with -prefill pods cached, open loop at -rate for -duration), startup (serve's start to ready, from nothing and restarted)")
	fs.IntVar(&c.pods, "pods", 500, "pods to create per phase")
	fs.DurationVar(&c.duration, "duration", 0, "open loop: run each phase this long (-rate × duration pods, overrides -pods and -meshed-pods); memory mode: default 60s")
	fs.IntVar(&c.prefill, "prefill", 5000, "memory mode: meshed pods created through the injector (closed loop) before the measured load, so serve's caches hold them")
	fs.BoolVar(&c.churn, "churn", false, "delete the oldest pod after each create once a phase holds -keep pods (memory mode: -prefill), so a long run measures a steady population, not a growing cache and etcd")
	fs.IntVar(&c.keep, "keep", 5000, "with -churn in throughput mode: pods each phase keeps")
	soak := fs.Duration("soak", 0, "memory mode: soak this long (sets -duration and -churn) and judge growth over the second half")
	fs.DurationVar(&c.writesWait, "writes-wait", 2*time.Minute, "writes mode: how long to wait after the deletes for the pods and their bootstrap Secrets to be gone")
	fs.DurationVar(&c.idle, "idle", 10*time.Second, "writes mode: idle period measuring the apiserver's background writes, subtracted from each phase")
	fs.IntVar(&c.spread, "namespaces", 1, "spread each phase's pods round-robin over this many namespaces (serve limits admissions per namespace: --injector-namespace-rate 200/s, burst 400)")
	fs.IntVar(&c.restarts, "restarts", 3, "startup mode: restarts against the existing Secrets, after the start from nothing")
	fs.IntVar(&c.meshedPods, "meshed-pods", 0, "pods to create in the phase through the injector (default: -pods)")
	fs.IntVar(&c.certKeyBits, "cert-key-bit-size", chartCertKeyBits, "MeshConfig spec.certificate.certKeyBitSize (the chart's and FSM's default; 0 leaves it unset); bootstrap keys follow it only under serve's --bootstrap-key-algorithm=meshconfig (FSM's choice), not by default")
	fs.IntVar(&c.conc, "concurrency", 16, "concurrent creates (closed loop: as fast as the apiserver takes them)")
	fs.Float64Var(&c.rate, "rate", 0, "open loop instead: start this many creates per second whatever the latency (0: closed loop)")
	alg := fs.String("key-algorithm", string(certs.DefaultKeyAlgorithm), "mesh CA key algorithm (serve's --ca-key-algorithm; the default is serve's); bootstrap keys are serve's --bootstrap-key-algorithm, ECDSA P-256 by default, whatever the CA")
	phases := fs.String("phases", "plain,secret,noop,sized,meshed", "phases to run, in order: plain (pods only), secret (pod + Secret by the client), noop (pod + Secret by the client, through a no-op mutating webhook in this process), sized (the same through a webhook in this process answering the injector's patch for the pod: no certificate, nothing cached), meshed (through the injector)")
	fs.BoolVar(&c.inProcess, "in-process", false, "run the injector handler in this process (pre-filled key pool, unthrottled client: NOT what ships) instead of `fsm-webhooks serve`")
	fs.StringVar(&c.binary, "binary", "", "fsm-webhooks binary to run (default: build cmd/fsm-webhooks from this checkout)")
	fs.StringVar(&c.serveLog, "serve-log", "", "write serve's log to this file (default: a temporary file removed at the end)")
	serveArgs := fs.String("serve-args", "", "extra serve flags, space-separated (printed next to every figure as non-default settings)")
	fs.IntVar(&c.serveCPU, "serve-cpu", -1, "run serve alone on this CPU and this tool, with the kube-apiserver and etcd it starts, on the others (a cluster's placement: the webhook on a node of its own; printed next to every figure); -1: no pinning")
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
	switch c.mode {
	case modeThroughput, modeWrites, modeStartup:
	case modeMemory:
		c.rate = cmp.Or(c.rate, 200)
		c.duration = cmp.Or(*soak, c.duration, time.Minute)
		c.churn = c.churn || *soak > 0
	default:
		return c, fmt.Errorf("-mode %q: want one of throughput, writes, memory, startup", c.mode)
	}
	if *soak != 0 && c.mode != modeMemory {
		return c, fmt.Errorf("-soak %s: only with -mode memory", *soak)
	}
	if c.duration != 0 {
		if c.rate <= 0 || c.duration < 0 {
			return c, fmt.Errorf("-duration %s: needs -rate (open loop) and must be positive", c.duration)
		}
		c.pods = int(math.Ceil(c.rate * c.duration.Seconds()))
		c.meshedPods = c.pods
	}
	c.meshedPods = cmp.Or(c.meshedPods, c.pods)
	if c.spread < 1 {
		return c, fmt.Errorf("-namespaces %d: must be positive", c.spread)
	}
	if c.keep < 1 {
		return c, fmt.Errorf("-keep %d: must be positive", c.keep)
	}
	if c.pods < 1 || c.meshedPods < 1 || c.conc < 1 || c.rate < 0 || c.certKeyBits < 0 || c.prefill < 0 || c.restarts < 0 {
		return c, fmt.Errorf("bad flags: pods %d, meshed-pods %d and concurrency %d must be positive, rate %g, cert-key-bit-size %d, prefill %d and restarts %d must not be negative",
			c.pods, c.meshedPods, c.conc, c.rate, c.certKeyBits, c.prefill, c.restarts)
	}
	for _, p := range strings.Split(*phases, ",") {
		ns, ok := phaseNames[strings.TrimSpace(p)]
		if !ok || slices.Contains(c.phases, ns) {
			return c, fmt.Errorf("-phases %q: each of plain, secret, noop, sized, meshed at most once", *phases)
		}
		c.phases = append(c.phases, ns)
	}
	c.serveArgs = strings.Fields(*serveArgs)
	if c.inProcess && (c.binary != "" || c.serveLog != "" || len(c.serveArgs) > 0) {
		return c, errors.New("-binary, -serve-log and -serve-args configure serve; -in-process runs no serve")
	}
	if c.writer, c.writerText, err = secretWriter(c.inProcess, c.serveArgs); err != nil {
		return c, fmt.Errorf("-serve-args: %w", err)
	}
	if c.serveCPU >= 0 {
		if c.inProcess {
			return c, errors.New("-serve-cpu places serve; -in-process runs no serve")
		}
		if err := checkServeCPU(c.serveCPU); err != nil {
			return c, fmt.Errorf("-serve-cpu %d: %w", c.serveCPU, err)
		}
	} else if c.serveCPU != -1 {
		return c, fmt.Errorf("-serve-cpu %d: a CPU number, or -1 for no pinning", c.serveCPU)
	}
	if !c.inProcess && c.selfProfile != "" {
		return c, errors.New("-profile profiles this process, which only holds the injector with -in-process (serve exposes no pprof)")
	}
	if c.inProcess && (c.mode == modeMemory || c.mode == modeStartup) {
		return c, fmt.Errorf("-mode %s measures the serve process; -in-process runs none", c.mode)
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
		if bin, err = benchenv.BuildServe(ctx, dir); err != nil {
			return err
		}
	}
	if c.serveCPU >= 0 {
		// Before the apiserver and etcd start: they inherit it.
		if err := pinAwayFrom(c.serveCPU); err != nil {
			return err
		}
	}
	env, cfg, err := benchenv.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := configv1alpha3.AddToScheme(scheme); err != nil {
		return err
	}
	// The load generator's own client has no client-side limiter at all:
	// under CPU starvation client-go's token bucket reports waits as
	// throttling, and an open loop must start each create when it is due.
	genCfg := rest.CopyConfig(cfg)
	genCfg.QPS = -1
	cl, err := client.New(genCfg, client.Options{Scheme: scheme})
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
		if kubeconfig, err = benchenv.WriteKubeconfig(env, dir); err == nil {
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

	for _, name := range namespacesOf(c.spread, nsPlain, nsSecret, nsNoop, nsSized, nsMeshed) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: namespaceLabels(name)}}
		if strings.HasPrefix(name, nsMeshed) {
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
	toolHooks := phaseWebhooks{cl: cl}
	if slices.Contains(c.phases, nsSized) && (c.mode == modeThroughput || c.mode == modeWrites) {
		settings, err := meshedSettings(ctx, cl, c.inProcess)
		if err != nil {
			return err
		}
		if toolHooks.sized, err = newSizedAnswer(settings, meshedMesh(c.inProcess), namespacesOf(c.spread, nsSized)); err != nil {
			return err
		}
	}

	keys, err := bootstrapKeys(c.inProcess, c.serveArgs, c.certKeyBits, c.alg)
	if err != nil {
		return err
	}
	fmt.Printf("mode %s, CA key=%s, %s, %s, MeshConfig certKeyBitSize %s, load generator GOMAXPROCS=%d\n%s\nfigures: %s\n",
		c.mode, c.alg, keys, c.writerText, certKeyBitsText(c.certKeyBits), goruntime.GOMAXPROCS(0), hook.label(), hook.regime())
	// Every mode but startup waits for the meshed pods' bootstrap Secrets,
	// which the controller writer stores after the create returned.
	var secrets *secretWatch
	if c.mode != modeStartup {
		if secrets, err = watchSecrets(ctx, genCfg); err != nil {
			return err
		}
	}
	switch c.mode {
	case modeWrites:
		err = runWrites(ctx, c, cfg, cl, hook, toolHooks, template, secrets)
	case modeMemory:
		err = runMemory(ctx, c, cfg, cl, hook.(*serveProcess), secrets)
	case modeStartup:
		err = runStartup(ctx, c, cl, hook.(*serveProcess))
	default:
		err = runThroughput(ctx, c, cfg, cl, hook, toolHooks, template, secrets)
	}
	if err != nil {
		return err
	}
	fmt.Println(loadAverage("at the end"))
	return nil
}

func certKeyBitsText(bits int) string {
	switch bits {
	case 0:
		return "unset (NON-DEFAULT)"
	case chartCertKeyBits:
		return strconv.Itoa(bits) + " (the chart's)"
	}
	return strconv.Itoa(bits) + " (NON-DEFAULT)"
}

// runThroughput runs the phases side by side: closed loop (throughput) or
// open loop (latency at a rate; with -duration, the steady state). A meshed
// phase lasts until its pods' bootstrap Secrets are stored, serve's samples
// included: with the controller writer they come after the creates.
func runThroughput(ctx context.Context, c config, cfg *rest.Config, cl client.Client, hook injectorUnderTest, toolHooks phaseWebhooks, template map[string][]byte, secrets *secretWatch) error {
	mode := fmt.Sprintf("closed loop, %d concurrent", c.conc)
	if c.rate > 0 {
		mode = fmt.Sprintf("open loop, %g creates/s started (%.0f s per phase)", c.rate, float64(c.pods)/c.rate)
	}
	pods := strconv.Itoa(c.pods)
	if c.meshedPods != c.pods {
		pods += fmt.Sprintf(" (%d through the injector)", c.meshedPods)
	}
	fmt.Printf("pods=%s per phase over %d namespace(s), %s\n", pods, c.spread, mode)
	// The baselines' closed-loop rates, to compare the later phases with.
	var base baselines
	for _, ns := range c.phases {
		meshed := ns == nsMeshed
		// Started off the clock, and proven to be called.
		stopWebhook, err := toolHooks.start(ctx, ns)
		if err != nil {
			return err
		}
		stopProfiles, err := startProfiles(ctx, c, cfg, meshed)
		if err != nil {
			return err
		}
		var report func(result) []string
		if meshed {
			if report, err = hook.measure(ctx); err != nil {
				return err
			}
		}
		n := c.pods
		if meshed {
			n = c.meshedPods
		}
		ch := &churner{cl: cl, keep: c.keep, secrets: clientWritesSecret(ns)}
		var after func(client.ObjectKey, error)
		if c.churn {
			after = ch.created(ctx)
		}
		res := createPods(ctx, cl, load{ns: ns, spread: c.spread, prefix: "p-", n: n, rate: c.rate, conc: c.conc, secretData: template, after: after})
		end := time.Now()
		if err := stopProfiles(); err != nil {
			return err
		}
		if err := stopWebhook(); err != nil {
			return fmt.Errorf("removing the %s phase's webhook: %w", ns, err)
		}
		// A baseline is compared with the ones before it.
		var against []string
		if c.rate <= 0 && !meshed {
			rate := float64(countSuccesses(res.calls)) / res.elapsed.Seconds()
			against = base.against(rate)
			base.set(ns, rate)
		}
		var secretReport []string
		if meshed {
			o := awaitSecrets(ctx, secrets, res, c.rate > 0)
			if c.rate <= 0 {
				secretReport = append(secretReport, closedLoopSecrets(o, base))
			}
			secretReport = append(secretReport, secretLines(o, c.rate > 0)...)
		}
		tag := phaseTag(ns, hook)
		printPhase(phaseLabels[ns], tag, c, res)
		if len(against) > 0 {
			fmt.Println("  pods/s: " + strings.Join(against, ", "))
		}
		if ns == nsSized {
			fmt.Println("  " + sizedStored(ctx, cl, client.ObjectKey{Namespace: podNamespace(ns, 0, c.spread), Name: "p-0"}))
		}
		if c.churn {
			fmt.Printf("  churn: %d oldest pods deleted as new ones were created (%d deletes failed), keeping %d\n", ch.deleted.Load(), ch.failed.Load(), c.keep)
		}
		if meshed {
			for _, line := range append(secretReport, report(res)...) {
				fmt.Println("  " + line)
			}
			fmt.Println("  " + adoption(ctx, cl, end))
		}
	}
	return nil
}

// awaitSecrets waits for the bootstrap Secrets of a phase's created pods
// and says how they came: an open loop's must all be there secretGrace after
// the phase ended; a closed loop's are waited for while they keep coming.
func awaitSecrets(ctx context.Context, w *secretWatch, res result, openLoop bool) secretOutcome {
	end := res.start.Add(res.elapsed)
	notBefore := time.Now()
	if openLoop {
		notBefore = end.Add(secretGrace)
	}
	return matchSecrets(res.calls, res.start, w.await(ctx, res.calls, notBefore), end.Add(secretGrace))
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

var phaseLabels = map[string]string{nsPlain: "pods only, no webhook      ", nsSecret: "pod + Secret by the client ", nsNoop: "pod + Secret, no-op webhook", nsSized: "pod + Secret, sized webhook", nsMeshed: "pods through the injector  "}

// phaseTag tags a phase's figures with the webhook its creates went
// through.
func phaseTag(ns string, hook injectorUnderTest) string {
	switch ns {
	case nsMeshed:
		return "[" + hook.regime() + "]"
	case nsNoop:
		return noopTag
	case nsSized:
		return sizedTag
	}
	return "[no webhook involved]"
}

// printPhase prints a phase's figures, tagged with the regime they were
// taken in.
func printPhase(label, tag string, c config, res result) {
	lat := latencies(res.calls)
	errs := 0
	for _, cl := range res.calls {
		if cl.err != nil {
			errs++
		}
	}
	fmt.Printf("%s: %7.1f pods/s created (%d of %d in %.1f s)  create p50 %6.2f ms  p99 %6.2f ms  errors %d (%.1f%%)  %s\n",
		label, float64(len(res.calls)-errs)/res.elapsed.Seconds(), len(res.calls)-errs, len(res.calls), res.elapsed.Seconds(),
		ms(pct(lat, 50)), ms(pct(lat, 99)), errs, 100*float64(errs)/float64(len(res.calls)), tag)
	for _, e := range errorSummary(res.calls, 3) {
		fmt.Println("  error: " + e)
	}
	if c.rate <= 0 {
		return
	}
	late := make([]time.Duration, len(res.calls))
	for i, cl := range res.calls {
		late[i] = cl.late
	}
	fmt.Printf("  load generator: creates started p50 %.2f ms, p99 %.2f ms, max %.2f ms behind schedule (one goroutine per create: a lag here means this process, not the apiserver, limited the rate)\n",
		ms(pct(late, 50)), ms(pct(late, 99)), ms(slices.Max(late)))
	if ws := windows(res.calls, c.window); len(ws) > 1 {
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
	for injector.Probe(ctx, cl, chartMesh, nsMeshed) != nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("webhook never became active: %w", injector.Probe(ctx, cl, chartMesh, nsMeshed))
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
	// With --bootstrap-secret-writer=controller the Secret follows the pod.
	var secrets corev1.SecretList
	for wait := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := cl.List(ctx, &secrets, client.InNamespace(nsMeshed), client.MatchingLabels{injector.ProxyUUIDLabel: pod.Labels[injector.ProxyUUIDLabel]}); err != nil {
			return nil, err
		}
		if len(secrets.Items) > 0 || time.Now().After(wait) {
			break
		}
	}
	if len(secrets.Items) != 1 {
		return nil, fmt.Errorf("warm-up pod has %d bootstrap Secrets, want 1", len(secrets.Items))
	}
	return secrets.Items[0].Data, nil
}

// adoption reports how long after the last create every bootstrap Secret of
// the meshed phase is owned by its pod, when something writes owner
// references (the injector's controller before issue 20's design, FSM's
// controller where it runs). It stops waiting when no Secret was adopted for
// 5 s: a design without owner-reference writes leaves all of them unowned.
func adoption(ctx context.Context, cl client.Client, lastCreate time.Time) string {
	const limit, quiet = time.Minute, 5 * time.Second
	owned := -1 // no count yet: the first list is a change
	var total int
	lastChange := time.Now()
	for {
		var list metav1.PartialObjectMetadataList
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		if err := cl.List(ctx, &list, client.HasLabels{injector.ProxyUUIDLabel}); err != nil {
			return fmt.Sprintf("bootstrap Secret adoption: listing failed: %v", err)
		}
		n := 0
		for _, s := range list.Items {
			if len(s.OwnerReferences) > 0 {
				n++
			}
		}
		if n != owned {
			owned, lastChange = n, time.Now()
		}
		total = len(list.Items)
		if owned == total || time.Since(lastCreate) > limit || time.Since(lastChange) > quiet {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	switch {
	case owned == 0:
		return fmt.Sprintf("bootstrap Secrets owned by their pod: none of %d (no owner-reference writes)", total)
	case owned < total:
		return fmt.Sprintf("bootstrap Secrets owned by their pod: %d of %d, %.1f s after the last create returned", owned, total, time.Since(lastCreate).Seconds())
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
	start   time.Time
	elapsed time.Duration
}

// load is one phase's creates.
type load struct {
	ns, prefix string // pods are named prefix + index
	spread     int    // namespaces: see podNamespace
	n          int
	rate       float64 // creates started per second; 0: closed loop
	conc       int     // closed loop: concurrent creates
	// secretData, in the phases whose client writes a Secret
	// (clientWritesSecret), is the Secret created before each pod, as the
	// injector does.
	secretData map[string][]byte
	// after, if set, runs after each create, off the clock (memory mode's
	// churn).
	after func(pod client.ObjectKey, err error)
}

// createPods creates l.n pods, closed loop (l.conc workers) or open loop
// (l.rate starts per second, each create on its own goroutine so a slow
// create never delays the next start).
func createPods(ctx context.Context, cl client.Client, l load) result {
	var mu sync.Mutex
	res := result{start: time.Now()}
	one := func(i int, due time.Time) {
		t := time.Now()
		key := client.ObjectKey{Namespace: podNamespace(l.ns, i, l.spread), Name: l.prefix + strconv.Itoa(i)}
		var err error
		if clientWritesSecret(l.ns) {
			err = cl.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: clientSecretName(key.Name), Namespace: key.Namespace}, Data: l.secretData})
		}
		pod := clientPod(key)
		if err == nil {
			// The created pod as stored, the injector's uuid label included.
			err = cl.Create(ctx, pod)
		}
		d := time.Since(t)
		mu.Lock()
		res.calls = append(res.calls, call{at: t.Sub(res.start), took: d, late: max(0, t.Sub(due)), err: err, uuid: pod.Labels[injector.ProxyUUIDLabel]})
		mu.Unlock()
		if l.after != nil {
			l.after(key, err)
		}
	}
	var wg sync.WaitGroup
	if l.rate > 0 {
		interval := time.Duration(float64(time.Second) / l.rate)
		for i := range l.n {
			due := res.start.Add(time.Duration(i) * interval)
			time.Sleep(time.Until(due))
			wg.Go(func() { one(i, due) })
		}
	} else {
		jobs := make(chan int)
		for range l.conc {
			wg.Go(func() {
				for i := range jobs {
					one(i, time.Now())
				}
			})
		}
		for i := range l.n {
			jobs <- i
		}
		close(jobs)
	}
	wg.Wait()
	res.elapsed = time.Since(res.start)
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
