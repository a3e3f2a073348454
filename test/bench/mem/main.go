// Command mem measures the memory of the shipped `fsm-webhooks serve`
// process (issue 20's target: RSS ≤ 60 MiB at 200 admissions/s for 60 s with
// 5000 meshed pods in its cache, no growth over a 10-minute soak).
//
// It starts an envtest apiserver (internal/kubeassets), builds and starts
// serve against it with its shipped defaults, injects one pod through the
// apiserver and clones it (and its bootstrap Secret) -pods times into an
// unmonitored namespace, so serve's caches hold that many meshed pods and
// Secrets as the injector wrote them (pods of a Deployment, each Secret
// owned by its pod as FSM's controller leaves it). Then it posts pod-create
// AdmissionReviews straight to the injector's port, open loop at -rate for
// -duration (and -soak after it), as the apiserver would: the apiserver
// cannot create 200 meshed pods/s on a small machine, and what is measured
// here is serve, not the apiserver. With -writes the injector issues each
// pod's certificate and writes its Secret (which the orphan sweep deletes a
// minute later: no pod ever appears); without, the reviews are dry runs.
//
// Every -sample it prints /proc/<pid>/status (VmRSS, RssAnon, RssFile,
// VmHWM) and the Go runtime's figures from serve's /metrics; with
// -heap-profile it saves serve's heap profile (serve --pprof-bind-address)
// after the seed and at the end.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/bench/benchenv"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

const (
	fsmNamespace = "fsm-system"
	nsMeshed     = "meshed"
	nsSeed       = "seed" // unmonitored: clones bypass the webhook
)

type config struct {
	pods        int
	rate        float64
	duration    time.Duration
	soak        time.Duration
	sample      time.Duration
	writes      bool
	binary      string
	serveArgs   []string
	serveEnv    []string
	heapProfile string
	serveLog    string
	maxInflight int
	settle      time.Duration
}

func main() {
	var c config
	var serveArgs, serveEnv string
	flag.IntVar(&c.pods, "pods", 5000, "meshed pods (and their bootstrap Secrets) in serve's caches before the load")
	flag.Float64Var(&c.rate, "rate", 200, "admissions per second, open loop")
	flag.DurationVar(&c.duration, "duration", time.Minute, "how long the load runs")
	flag.DurationVar(&c.soak, "soak", 0, "after -duration, keep the same load this long, sampling every 30 s (issue 20: 10m)")
	flag.DurationVar(&c.sample, "sample", 5*time.Second, "sampling period during -duration")
	flag.BoolVar(&c.writes, "writes", false, "real admissions: each issues a certificate and writes a bootstrap Secret (default: dry runs)")
	flag.StringVar(&c.binary, "binary", "", "serve binary to run (default: build cmd/fsm-webhooks from this checkout)")
	flag.StringVar(&serveArgs, "serve-args", "", "extra serve flags, space separated")
	flag.StringVar(&serveEnv, "serve-env", "", "extra environment for serve, space separated (GOGC=50 GOMEMLIMIT=50MiB GODEBUG=gctrace=1)")
	flag.StringVar(&c.heapProfile, "heap-profile", "", "path prefix for serve's heap profiles (-seed.pb.gz, -end.pb.gz); starts serve with --pprof-bind-address")
	flag.IntVar(&c.maxInflight, "max-inflight", 200, "admissions in flight at most; one more is counted as refused, as the apiserver's --max-mutating-requests-inflight (200) would refuse its pod create")
	flag.DurationVar(&c.settle, "settle", 20*time.Second, "wait after the seed before measuring")
	flag.StringVar(&c.serveLog, "serve-log", "", "keep serve's log here (gctrace goes there too)")
	flag.Parse()
	c.serveArgs, c.serveEnv = strings.Fields(serveArgs), strings.Fields(serveEnv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "mem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "fsm-mem-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := c.binary
	if bin == "" {
		if bin, err = benchenv.BuildServe(ctx, dir); err != nil {
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
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := installMesh(ctx, cl); err != nil {
		return err
	}
	kubeconfig, err := benchenv.WriteKubeconfig(env, dir)
	if err != nil {
		return err
	}
	s, err := startServe(ctx, bin, kubeconfig, dir, c)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "mem:", err)
		}
	}()
	fmt.Printf("serve ready in %.2f s; %s\n", s.ready.Seconds(), s.describe())
	s.print(ctx, "idle, empty cluster")

	t := time.Now()
	if err := seed(ctx, cl, c.pods); err != nil {
		return err
	}
	fmt.Printf("seeded %d meshed pods and Secrets in %.1f s\n", c.pods, time.Since(t).Seconds())
	// Let serve's caches and controllers catch up with the seed.
	time.Sleep(c.settle)
	s.print(ctx, fmt.Sprintf("idle, %d meshed pods cached", c.pods))
	s.heap(ctx, c.heapProfile, "seed")

	post, err := newPoster(ctx, cl, s.ports.injector, c.writes)
	if err != nil {
		return err
	}
	mode := "dry-run"
	if c.writes {
		mode = "with Secret writes"
	}
	fmt.Printf("load: %.0f admissions/s (%s) for %s\n", c.rate, mode, c.duration)
	st := load(ctx, post, c.rate, c.maxInflight, c.duration, c.sample, func(at time.Duration) { s.print(ctx, fmt.Sprintf("load t=%3.0fs", at.Seconds())) })
	fmt.Println("  " + st.String())
	if c.soak > 0 {
		fmt.Printf("soak: %.0f admissions/s (%s) for %s\n", c.rate, mode, c.soak)
		st := load(ctx, post, c.rate, c.maxInflight, c.soak, 30*time.Second, func(at time.Duration) { s.print(ctx, fmt.Sprintf("soak t=%4.0fs", at.Seconds())) })
		fmt.Println("  " + st.String())
	}
	s.heap(ctx, c.heapProfile, "end")
	time.Sleep(10 * time.Second)
	s.print(ctx, "10 s after the load")
	return ctx.Err()
}

// installMesh creates the fsm namespace, the chart's MeshConfig and the
// meshed (monitored, injection enabled) and seed (unmonitored) namespaces.
func installMesh(ctx context.Context, cl client.Client) error {
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}},
		{ObjectMeta: metav1.ObjectMeta{Name: nsMeshed, Labels: map[string]string{fsmnames.MonitoredByLabel: "fsm"},
			Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: nsSeed}},
	} {
		if err := cl.Create(ctx, ns); err != nil {
			return err
		}
	}
	mc, err := validator.BaseMeshConfig(fsmNamespace, fsmnames.MeshConfigName)
	if err != nil {
		return err
	}
	return cl.Create(ctx, mc)
}

// appPod is a Deployment's pod as the ReplicaSet controller writes it
// (labels, a rollout's annotation; the owner is set on the seed's clones).
func appPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsMeshed, GenerateName: "bench-7d9f8c6b5d-",
			Labels:      map[string]string{"app": "bench", "version": "v1", "pod-template-hash": "7d9f8c6b5d"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
}

// seed injects one pod through the apiserver, then clones it and its
// bootstrap Secret n times into the unmonitored namespace, each clone with a
// uuid of its own (labels, Secret name, volume): what n injected pods leave
// in serve's Pod and Secret caches, written in a fraction of the time. Each
// pod is owned by a ReplicaSet, and each Secret by its pod, as FSM's
// controller leaves it (no garbage collector runs here to act on them).
func seed(ctx context.Context, cl client.Client, n int) error {
	pod := appPod("template")
	if err := cl.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating the template pod through the injector: %w", err)
	}
	id := pod.Labels[injector.ProxyUUIDLabel]
	if id == "" {
		return fmt.Errorf("template pod %s/%s was not injected (no %s label)", pod.Namespace, pod.Name, injector.ProxyUUIDLabel)
	}
	secret := &corev1.Secret{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: nsMeshed, Name: injector.BootstrapSecretName(id)}, secret); err != nil {
		return fmt.Errorf("template pod's bootstrap Secret: %w", err)
	}
	podJSON, err := json.Marshal(clean(pod))
	if err != nil {
		return err
	}
	secretJSON, err := json.Marshal(clean(secret))
	if err != nil {
		return err
	}
	errs := testenv.Concurrently(n, 32, func(i int) error {
		nid := string(uuid.NewUUID())
		var p corev1.Pod
		var s corev1.Secret
		if err := json.Unmarshal(bytes.ReplaceAll(podJSON, []byte(id), []byte(nid)), &p); err != nil {
			return err
		}
		if err := json.Unmarshal(bytes.ReplaceAll(secretJSON, []byte(id), []byte(nid)), &s); err != nil {
			return err
		}
		p.Namespace, s.Namespace = nsSeed, nsSeed
		p.Name = fmt.Sprintf("%s%05d", p.GenerateName, i)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bench-7d9f8c6b5d",
			UID: "0b6f3c52-5f54-4c4e-9a43-3d0f6c1d7e21", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		if err := cl.Create(ctx, &p); err != nil {
			return err
		}
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID}}
		return cl.Create(ctx, &s)
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	return nil
}

// clean drops what the apiserver sets, so the object can be created again.
func clean[T client.Object](o T) T {
	o.SetResourceVersion("")
	o.SetUID("")
	o.SetCreationTimestamp(metav1.Time{})
	o.SetManagedFields(nil)
	o.SetOwnerReferences(nil)
	return o
}

// poster posts pod-create AdmissionReviews to the injector over TLS, HTTP/2
// as the apiserver does, trusting the caBundle serve registered.
type poster struct {
	url    string
	client *http.Client
	dryRun bool
	n      atomic.Int64
}

func newPoster(ctx context.Context, cl client.Client, port int, writes bool) (*poster, error) {
	var mwc admv1.MutatingWebhookConfiguration
	if err := cl.Get(ctx, types.NamespacedName{Name: fsmnames.MutatingConfigurationName("fsm")}, &mwc); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if len(mwc.Webhooks) == 0 || !pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		return nil, fmt.Errorf("%s: no caBundle", mwc.Name)
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		MaxIdleConns:      100, MaxIdleConnsPerHost: 100,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &poster{url: fmt.Sprintf("https://127.0.0.1:%d%s", port, fsmnames.InjectorPath),
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, dryRun: !writes}, nil
}

func (p *poster) post(ctx context.Context) error {
	i := p.n.Add(1)
	pod := appPod(fmt.Sprintf("load-%d", i))
	raw, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uuid.NewUUID(), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: nsMeshed, Name: pod.Name, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}, DryRun: &p.dryRun,
			UserInfo: authnUser,
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &got); err != nil {
		return err
	}
	if got.Response == nil || !got.Response.Allowed || len(got.Response.Patch) == 0 {
		return fmt.Errorf("not injected: %s", bytes.TrimSpace(out[:min(len(out), 300)]))
	}
	return nil
}

// authnUser is who the apiserver says creates the pods.
var authnUser = authenticationv1.UserInfo{Username: "bench", Groups: []string{"system:authenticated"}}

type stats struct {
	sent, failed, refused int
	lat                   []time.Duration
	firstErr              string
	elapsed               time.Duration
}

func (s stats) String() string {
	slices.Sort(s.lat)
	q := func(p float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}
		return float64(s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))].Microseconds()) / 1000
	}
	out := fmt.Sprintf("%d admissions in %.1f s (%.1f/s), %d failed, %d refused over the in-flight limit, latency p50 %.2f ms p99 %.2f ms",
		s.sent, s.elapsed.Seconds(), float64(s.sent)/s.elapsed.Seconds(), s.failed, s.refused, q(.5), q(.99))
	if s.firstErr != "" {
		out += "; first error: " + s.firstErr
	}
	return out
}

// load posts at rate per second (open loop: a slow answer does not slow the
// sender) for d, at most maxInflight at a time, calling tick every period.
func load(ctx context.Context, p *poster, rate float64, maxInflight int, d, period time.Duration, tick func(at time.Duration)) stats {
	var mu sync.Mutex
	var st stats
	inflight := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	nextTick := period
	for i := 0; ; i++ {
		at := time.Duration(i) * interval
		if at >= d || ctx.Err() != nil {
			break
		}
		if at >= nextTick {
			go tick(at)
			nextTick += period
		}
		time.Sleep(time.Until(start.Add(at)))
		select {
		case inflight <- struct{}{}:
		default:
			mu.Lock()
			st.refused++
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-inflight }()
			t := time.Now()
			err := p.post(ctx)
			took := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			st.sent++
			st.lat = append(st.lat, took)
			if err != nil {
				st.failed++
				if st.firstErr == "" {
					st.firstErr = err.Error()
				}
			}
		})
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	return st
}

type servePorts struct{ injector, validator, converter, metrics, health, pprof int }

type serveProcess struct {
	cmd     *exec.Cmd
	ports   servePorts
	args    []string
	env     []string
	logPath string
	ready   time.Duration
	done    chan error
}

func startServe(ctx context.Context, bin, kubeconfig, dir string, c config) (*serveProcess, error) {
	free, err := freeport.LoopbackN(6)
	if err != nil {
		return nil, err
	}
	p := servePorts{free[0], free[1], free[2], free[3], free[4], free[5]}
	args := []string{"serve", "--kubeconfig=" + kubeconfig,
		"--webhook-url-host=127.0.0.1", "--webhook-bind-host=127.0.0.1",
		"--injector-port=" + strconv.Itoa(p.injector), "--validator-port=" + strconv.Itoa(p.validator),
		"--converter-port=" + strconv.Itoa(p.converter),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", p.metrics),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", p.health)}
	extra := slices.Clone(c.serveArgs)
	if c.heapProfile != "" {
		extra = append(extra, fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", p.pprof))
	}
	s := &serveProcess{ports: p, args: extra, env: c.serveEnv, logPath: c.serveLog, done: make(chan error, 1)}
	if s.logPath == "" {
		s.logPath = filepath.Join(dir, "serve.log")
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, append(args, extra...)...)
	s.cmd.Env = append(os.Environ(), c.serveEnv...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); _ = logFile.Close() }()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.health)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := get(ctx, readyz); err == nil {
			s.ready = time.Since(start)
			return s, nil
		} else if time.Now().After(deadline) {
			_ = s.stop()
			return nil, fmt.Errorf("serve not ready after 3 minutes: %v (log %s)", err, s.logPath)
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("serve exited before it was ready: %v (log %s)", err, s.logPath)
		case <-ctx.Done():
			_ = s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *serveProcess) describe() string {
	d := "serve with shipped defaults"
	if len(s.args) > 0 {
		d += " plus " + strings.Join(s.args, " ")
	}
	if len(s.env) > 0 {
		d += ", env " + strings.Join(s.env, " ")
	}
	return d
}

func (s *serveProcess) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // ended by our signal (or failed earlier: its log says why)
		}
		return err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("serve did not stop within 20 s of SIGTERM; killed")
	}
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, err
}

// print writes one line: the kernel's view of serve's memory and the Go
// runtime's (from /metrics).
func (s *serveProcess) print(ctx context.Context, label string) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		fmt.Printf("%-28s %v\n", label, err)
		return
	}
	kib := func(name string) string {
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				if f := strings.Fields(v); len(f) == 2 {
					n, _ := strconv.ParseFloat(f[0], 64)
					return fmt.Sprintf("%.1f", n/1024)
				}
			}
		}
		return "?"
	}
	out := fmt.Sprintf("%-28s RSS %s MiB (anon %s, file %s [%s]; peak %s), CPU %s", label, kib("VmRSS"), kib("RssAnon"), kib("RssFile"), s.binaryRSS(), kib("VmHWM"), s.cpu())
	if m, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.ports.metrics)); err == nil {
		g := gauges(m)
		mib := func(name string) string { return fmt.Sprintf("%.1f", g[name]/(1<<20)) }
		out += fmt.Sprintf(" | Go heap inuse %s alloc %s, stacks %s, sys %s MiB, released %s, goroutines %.0f, GC next %s",
			mib("go_memstats_heap_inuse_bytes"), mib("go_memstats_heap_alloc_bytes"), mib("go_memstats_stack_inuse_bytes"),
			mib("go_memstats_sys_bytes"), mib("go_memstats_heap_released_bytes"), g["go_goroutines"], mib("go_memstats_next_gc_bytes"))
	}
	fmt.Println(out)
}

// gauges are the unlabelled samples of a Prometheus text exposition.
func gauges(text []byte) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(string(text)) {
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// heap saves serve's heap profile to prefix-name.pb.gz.
func (s *serveProcess) heap(ctx context.Context, prefix, name string) {
	if prefix == "" {
		return
	}
	b, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", s.ports.pprof))
	if err == nil {
		err = os.WriteFile(prefix+"-"+name+".pb.gz", b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mem: heap profile:", err)
		return
	}
	fmt.Printf("heap profile: %s-%s.pb.gz\n", prefix, name)
}

// binaryRSS is how much of serve's executable is resident, by mapping
// (text, read-only data, data), from /proc/<pid>/smaps.
func (s *serveProcess) binaryRSS() string {
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", s.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	kib := map[string]float64{}
	var perms string
	for line := range strings.Lines(string(smaps)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			perms = ""
			if len(f) == 6 && f[5] == exe {
				perms = f[1]
			}
		case perms != "" && len(f) == 3 && f[0] == "Rss:":
			n, _ := strconv.ParseFloat(f[1], 64)
			kib[perms] += n
		}
	}
	return fmt.Sprintf("binary text %.1f, rodata %.1f, data %.1f", kib["r-xp"]/1024, kib["r--p"]/1024, kib["rw-p"]/1024)
}

// cpu is serve's user+system CPU time so far (fields 14 and 15 of
// /proc/<pid>/stat, in USER_HZ = 100 ticks per second).
func (s *serveProcess) cpu() string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 13 {
		return fmt.Sprintf("unreadable /proc stat %q", stat)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err.Error()
		}
		ticks += n
	}
	return fmt.Sprintf("%.1f s", float64(ticks)/100)
}
