package install_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/syncbuf"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

const servedByFSM = "takeover-test.flomesh.io/served-by-fsm"

// startFSMInjector stands in for FSM's injector pod: TLS with a cert issued
// from the mesh root for fsm-injector.<ns>.svc, answering every pod create
// with an annotation (so the test sees who admitted the pod). It stops as a
// scaled-down pod does: a graceful Shutdown (HTTP/2 GOAWAY, in-flight
// requests answered).
func startFSMInjector(t *testing.T, root meshCA) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate-pod-creation", func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
			return
		}
		patch := `[{"op":"add","path":"/metadata/annotations","value":{"` + servedByFSM + `":"true"}}]`
		pt := admissionv1.PatchTypeJSONPatch
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: []byte(patch), PatchType: &pt}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	})
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{root.serving(t, "fsm-injector."+ns+".svc")}}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	return l.Addr().String(), stop
}

// serveProc is `fsm-webhooks serve` run out of cluster as the chart's
// Deployment runs it (its arguments, its ServiceAccount impersonated).
type serveProc struct {
	health, injector, validator, converter int
	// stop ends the process as the kubelet does (SIGTERM, then KILL).
	stop func()
	// exited receives the process's exit once it ends by itself.
	exited <-chan error
	// gone is closed once the process has ended, however; err is then how.
	gone <-chan struct{}
	err  error
	logs *syncbuf.Buffer
}

// ready is the pod's readiness: /readyz answers 200.
func (p *serveProc) ready() bool { return p.readyz("") }

// readyz is whether /readyz/<check> (/readyz when check is empty) answers 200.
func (p *serveProc) readyz(check string) bool {
	// The chart's readinessProbe timeoutSeconds: a starved serve answering
	// in over a second is still Ready to the kubelet.
	c := http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.health)
	if check != "" {
		url += "/" + check
	}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startServe runs bin's serve with the chart's Deployment args as the
// chart's ServiceAccount, then the test's ports and extraArgs (which
// override).
func startServe(ctx context.Context, t *testing.T, env *testenv.Env, bin string, extraArgs ...string) *serveProc {
	t.Helper()
	awaitRBAC(ctx, t, env)
	var dep appsv1.Deployment
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &dep); err != nil {
		t.Fatal(err)
	}
	kubeconfig := impersonatingKubeconfig(t, env.KubeConfig, saUser,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"})
	p := &serveProc{health: freePort(t), injector: freePort(t), validator: freePort(t), converter: freePort(t)}
	args := append([]string{}, dep.Spec.Template.Spec.Containers[0].Args...)
	args = append(args,
		"--kubeconfig="+kubeconfig,
		fmt.Sprintf("--injector-port=%d", p.injector),
		fmt.Sprintf("--validator-port=%d", p.validator),
		fmt.Sprintf("--converter-port=%d", p.converter),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", p.health),
		"--key-pool-size=4",
		"--webhook-bind-host=127.0.0.1",
		// The tests send admissions without creating the pods, so a
		// Secret handed off to the controller (a create slower than the
		// 1 s budget on a loaded machine) would never be written; and
		// FSM's controller Gets a pod's Secret when the pod appears, so
		// one handed off because 16 issuances were under way (a busy
		// hand-off: cert-manager's issuance is slow on a loaded machine)
		// is not there yet and gets no owner from it (docs/design.md,
		// bootstrap Secret writer). Both are overload behaviour, not what
		// these tests are about. The budget is capped at half the time the
		// admission has left (7.5 s of 15 s): a create slower than that
		// would fail the admission soon after anyway.
		"--injector-secret-handoff-budget=30s",
		"--injector-secret-handoff-in-flight=1000",
	)
	args = append(args, extraArgs...) // the last of a flag wins
	logs := &syncbuf.Buffer{}
	srv := exec.Command(bin, args...)
	srv.Stdout, srv.Stderr = logs, logs
	srv.Env = os.Environ()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited, gone := make(chan error, 1), make(chan struct{})
	go func() {
		err := srv.Wait()
		p.err = err
		close(gone)
		exited <- err
	}()
	p.exited, p.gone, p.logs = exited, gone, logs
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			_ = srv.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = srv.Process.Kill()
				<-exited
			}
		})
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("fsm-webhooks output:\n%s", logs.String())
		}
	})
	return p
}

// podLoad creates a pod in namespace every interval until stopped and
// records who admitted each: FSM's injector (its annotation), ours (the
// sidecar's uuid label), nobody (admitted uninjected), or an error (both
// injected it counts as one).
//
// A create the apiserver is still holding is not a failure: it fails when
// the apiserver says so (a webhook's timeout under failurePolicy Fail, a
// refusal) or at the client's 60 s deadline. So the load does not give up
// on a slow create: on a 2-core CI machine the race-instrumented test
// process (Helm's rendering, cert-manager's controllers) can hold the CPU
// for seconds, and the creates then queue behind the signer. The slowest
// create is reported, so such a stall shows.
type podLoad struct {
	mu                 sync.Mutex
	fsm, ours, neither int // admitted by FSM's injector, ours, none
	failures           []string
	failedAt           []time.Time // when each failed create was started
	slowest            time.Duration
	stop               func()
	done               chan struct{}
}

// loadInterval is how often the load creates a pod under mesh CA root:
// every 100 ms, every 200 ms under cert-manager, whose controllers sign each
// pod's certificate in this race-instrumented test process beside Helm's
// rendering (10 signings a second there starve a 2-core CI machine shared
// with another package's apiserver). Each step's window, when there is
// one, lasts seconds: either rate samples it many times.
func loadInterval(root meshCA) time.Duration {
	if _, ok := root.(*certManagerCA); ok {
		return 200 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// maxCreatesInFlight bounds the load's goroutines: a minute of creates at
// 100 ms, so only a create stuck past the client's deadline can reach it.
const maxCreatesInFlight = 600

func startPodLoad(c client.Client, namespace, prefix string, interval time.Duration) *podLoad {
	l := &podLoad{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = func() { cancel(); <-l.done }
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		sem := make(chan struct{}, maxCreatesInFlight)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				select {
				case sem <- struct{}{}:
				default:
					l.record(now, "", fmt.Errorf("tick %d skipped: %d creates in flight", i, maxCreatesInFlight))
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					pod := &corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i), Namespace: namespace},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
					}
					cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer ccancel()
					err := c.Create(cctx, pod)
					l.took(time.Since(now))
					switch {
					case err != nil:
						l.record(now, "", err)
					case pod.Annotations[servedByFSM] != "" && pod.Labels["fsm-proxy-uuid"] != "":
						// Both injectors' configurations matched it.
						l.record(now, "", fmt.Errorf("pod %s injected by FSM's injector and by ours", pod.Name))
					case pod.Annotations[servedByFSM] != "":
						l.record(now, "fsm", nil)
					case pod.Labels["fsm-proxy-uuid"] != "":
						l.record(now, "ours", nil)
					default:
						l.record(now, "", nil)
					}
				}()
			}
		}
	}()
	return l
}

func (l *podLoad) took(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slowest = max(l.slowest, d)
}

// slowestCreate is the longest a create took, from its tick to its answer.
func (l *podLoad) slowestCreate() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slowest
}

func (l *podLoad) record(at time.Time, by string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.failures = append(l.failures, at.Format("15:04:05.000")+" "+err.Error())
		l.failedAt = append(l.failedAt, at)
	case by == "fsm":
		l.fsm++
	case by == "ours":
		l.ours++
	default:
		l.neither++
	}
}

func (l *podLoad) counts() (fsm, ours int, failures []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fsm, l.ours, append([]string(nil), l.failures...)
}

// lostInStop splits the failures into those FSM's injector lost as it
// stopped and the rest. FSM v1.5.1's webhook server stops with
// http.Server.Shutdown on SIGTERM, with no drain (pkg/webhook/server.go):
// a call the apiserver sends on a pooled connection to it as that
// connection closes fails ("use of closed network connection", a reset,
// an EOF), whatever a migration does, as in any scale-down or rolling
// update of FSM's injector. Such a failure is FSM's stop's when its create
// began during the stop or within a webhook timeout (30 s at most) before
// it, and its error is a lost connection; the procedure's own windows
// (trust, routing) show as any other error.
func (l *podLoad) lostInStop(stopBegan, stopEnded time.Time) (lost, other []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, f := range l.failures {
		connLost := strings.Contains(f, "use of closed network connection") || strings.Contains(f, "connection reset by peer") ||
			strings.Contains(f, "EOF") || strings.Contains(f, "broken pipe")
		at := l.failedAt[i]
		if connLost && strings.Contains(f, "fsm-inject.k8s.io") && !at.Before(stopBegan.Add(-30*time.Second)) && !at.After(stopEnded) {
			lost = append(lost, f)
			continue
		}
		other = append(other, f)
	}
	return lost, other
}

// uninjected is how many pods were admitted without a sidecar.
func (l *podLoad) uninjected() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.neither
}

// fsmBootstrapOwner reproduces FSM v1.5.1's WatchAndUpdateProxyBootstrapSecret
// (pkg/k8s/announcement_handlers.go): on every pod add with a proxy uuid
// label, Get its bootstrap Secret and plain-Update it with the pod appended
// to ownerReferences, conflicts ignored.
type fsmBootstrapOwner struct {
	mu        sync.Mutex
	updates   map[string]int // Secret name -> successful Updates
	conflicts int
	errs      []string
}

func startFSMBootstrapOwner(t *testing.T, cs kubernetes.Interface) *fsmBootstrapOwner {
	t.Helper()
	o := &fsmBootstrapOwner{updates: map[string]int{}}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	f := informers.NewSharedInformerFactory(cs, 0)
	_, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		pod := obj.(*corev1.Pod)
		uuid := pod.Labels["fsm-proxy-uuid"]
		if uuid == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		name := "sidecar-bootstrap-config-" + uuid
		s, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			o.fail(fmt.Sprintf("get %s: %v", name, err))
			return
		}
		s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID})
		_, err = cs.CoreV1().Secrets(pod.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		o.mu.Lock()
		defer o.mu.Unlock()
		switch {
		case apierrors.IsConflict(err):
			o.conflicts++
		case err != nil:
			o.errs = append(o.errs, fmt.Sprintf("update %s: %v", name, err))
		default:
			o.updates[name]++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(stop)
	return o
}

func (o *fsmBootstrapOwner) fail(msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, msg)
}

// secretWrites counts the writes (watch MODIFIED events) to each bootstrap
// Secret in namespace after its creation. The count is an error once the
// watch has ended before the test: what it holds is then incomplete.
func secretWrites(ctx context.Context, t *testing.T, cfg *rest.Config, namespace string) func() (map[string]int, error) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(watchConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().Secrets(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: "fsm-proxy-uuid"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	writes := map[string]int{}
	var ended error
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				mu.Lock()
				ended = fmt.Errorf("the watch of bootstrap Secrets in %s failed at %s: %w", namespace, time.Now().Format("15:04:05.000"), apierrors.FromObject(ev.Object))
				mu.Unlock()
				return
			}
			if s, ok := ev.Object.(*corev1.Secret); ok && ev.Type == watch.Modified {
				mu.Lock()
				writes[s.Name]++
				mu.Unlock()
			}
		}
		if !stopping.Load() {
			mu.Lock()
			ended = fmt.Errorf("the watch of bootstrap Secrets in %s ended at %s (%v): its count of writes is incomplete", namespace, time.Now().Format("15:04:05.000"), ctx.Err())
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stopping.Store(true)
		w.Stop()
		<-done
	})
	return func() (map[string]int, error) {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(writes), ended
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestTakeoverWindow performs a takeover while a pod is created every
// 100 ms in a meshed namespace, the apiserver calling the webhooks through
// their Services (clusterNet): FSM's injector (a stand-in serving a cert
// from FSM's root: tresor's, issued by a real Vault's PKI role with
// fsm.certificateProvider.kind=vault, or by cert-manager's real CA issuer
// with kind=cert-manager; serve then runs with the chart's settings for that
// provider) admits until it is scaled to zero right after the
// Services switch, ours after. In two steps, as docs/migrate-from-fsm.md
// prescribes, no create fails; in one step the Services select our pods
// before they are Ready and every new connection fails until then. FSM's
// controller's bootstrap Secret owner updates (reproduced) run beside
// `serve` throughout. After the two-step takeover, with Helm 4 and with
// Helm 3, the mesh is handed back to FSM under the same load
// (rollbackUnderLoad).
func TestTakeoverWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := buildServer(ctx, t, t.TempDir())
	noHook := map[string]any{"enabled": false} // a hook Job needs a kubelet
	tresor := func(_ context.Context, t *testing.T) meshCA { return newFSMRoot(t) }
	vault := func(ctx context.Context, t *testing.T) meshCA { return newVaultCA(ctx, t) }
	tests := []struct {
		name  string
		helm  takeoverHelm
		ca    func(context.Context, *testing.T) meshCA // FSM's certificateProvider.kind
		steps []map[string]any                         // the first installs, the others upgrade
		// rollback: then roll back to FSM (docs/migrate-from-fsm.md).
		rollback bool
		// wantWindow: creates fail between the Service switch and our
		// pod's readiness.
		wantWindow bool
	}{
		{"two steps", helm4, tresor, twoSteps(), true, false},
		{"two steps, helm3", helm3, tresor, twoSteps(), true, false},
		{"two steps, vault", helm4, vault, twoSteps(), true, false},
		{"two steps, cert-manager", helm4, newCertManagerCA, twoSteps(), true, false},
		{"one step", helm4, tresor, []map[string]any{
			{"fsm": map[string]any{"meshConfig": map[string]any{"create": false}, "crdUpgrade": noHook}},
		}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			failures := takeoverUnderLoad(ctx, t, bin, tc.helm, tc.ca(ctx, t), tc.steps, tc.rollback)
			if tc.wantWindow && failures == 0 {
				t.Errorf("one-step takeover: no pod create failed, want the window before our pod is Ready")
			}
			if !tc.wantWindow && failures != 0 {
				t.Errorf("%d pod creates failed during the takeover, want 0", failures)
			}
		})
	}
}

// twoSteps are the values of the two-step takeover (docs/migrate-from-fsm.md).
func twoSteps() []map[string]any {
	noHook := map[string]any{"enabled": false} // a hook Job needs a kubelet
	return []map[string]any{
		{"fsm": map[string]any{"meshConfig": map[string]any{"create": false}, "crdUpgrade": noHook, "webhooks": map[string]any{"createServices": false}}},
		{"fsm": map[string]any{"meshConfig": map[string]any{"create": false}, "crdUpgrade": noHook}},
	}
}

// takeoverUnderLoad installs FSM, starts the load, runs the Helm steps,
// starts `serve` after the first, stops FSM's injector once ours admits,
// and returns how many creates failed; with rollback, then rolls back.
func takeoverUnderLoad(ctx context.Context, t *testing.T, bin string, h takeoverHelm, root meshCA, steps []map[string]any, rollback bool) int {
	steps = withCA(steps, root)
	cn, flags := startClusterNet(t)
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}, APIServerFlags: flags})
	c := env.Client
	cn.c = c
	installFSM(ctx, t, c, root)
	if in, ok := root.(clusterCA); ok {
		in.start(ctx, t, env) // cert-manager: its controllers and FSM's Issuer
	}

	// FSM's injector pod, selected by FSM's Service.
	var fsmDep appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-injector"}, &fsmDep); err != nil {
		t.Fatal(err)
	}
	fsmAddr, stopFSM := startFSMInjector(t, root)
	cn.set(&backend{name: "fsm-injector-0", labels: fsmDep.Spec.Template.Labels, ports: map[string]string{"9090": fsmAddr}, ready: func() bool { return true }})

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        "app",
		Labels:      map[string]string{"flomesh.io/monitored-by": mesh},
		Annotations: map[string]string{"flomesh.io/sidecar-injection": "enabled"},
	}}); err != nil {
		t.Fatal(err)
	}
	owner := startFSMBootstrapOwner(t, env.Clientset)
	writes := secretWrites(ctx, t, env.Config, "app")

	every := loadInterval(root)
	load := startPodLoad(c, "app", "takeover", every)
	stopped := false
	defer func() {
		if !stopped {
			load.stop()
		}
	}()
	mark := func(step string) {
		f, o, fails := load.counts()
		t.Logf("%s %s: admitted by FSM %d, by ours %d, failed %d", time.Now().Format("15:04:05.000"), step, f, o, len(fails))
	}
	waitFor(t, "FSM's injector admits pods", time.Minute, func() bool { f, _, _ := load.counts(); return f >= 5 })
	mark("FSM serving")

	// FSM's injector is scaled to zero right after the step that switches
	// the Services: from then on every new connection of the apiserver goes
	// where the Services send it (established ones stay with FSM's pod, as
	// conntrack keeps them, until it stops).
	var fsmStopBegan, fsmStopped time.Time
	fsmDown := func() {
		fsmStopBegan = time.Now()
		cn.remove("fsm-injector-0")
		stopFSM()
		fsmStopped = time.Now()
		mark("FSM's injector stopped")
	}
	// The first step adopts the configurations with their live caBundle
	// (FSM's root, which also signs our serving certs: the same tresor root,
	// or Vault's CA).
	if err := h.install(ctx, t, env.KubeConfig, steps[0], true); err != nil {
		t.Fatal(err)
	}
	mark("installed")
	if len(steps) == 1 {
		fsmDown()
	}
	var ours appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &ours); err != nil {
		t.Fatal(err)
	}
	proc := startServe(ctx, t, env, bin)
	cn.set(&backend{name: "fsm-webhooks-0", labels: ours.Spec.Template.Labels, ready: proc.ready, ports: map[string]string{
		"sidecar-inject": fmt.Sprintf("127.0.0.1:%d", proc.injector),
		"validator":      fmt.Sprintf("127.0.0.1:%d", proc.validator),
		"crdconversion":  fmt.Sprintf("127.0.0.1:%d", proc.converter),
	}})
	waitFor(t, "our pod Ready", 3*time.Minute, func() bool {
		select {
		case <-proc.gone: // a refused flag: fail now, not in 3 minutes
			t.Fatalf("fsm-webhooks exited before it was Ready:\n%s", proc.logs.String())
		default:
		}
		return proc.ready()
	})
	mark("our pod Ready")

	// Then the Services change hands: their selectors pick our Ready pods.
	for _, values := range steps[1:] {
		if err := h.upgrade(ctx, t, env.KubeConfig, values, true); err != nil {
			t.Fatal(err)
		}
		mark("upgraded")
	}
	if len(steps) > 1 {
		fsmDown()
	}
	waitFor(t, "our injector admits pods", time.Minute, func() bool { _, o, _ := load.counts(); return o >= 10 })
	mark("ours admitting")
	time.Sleep(3 * time.Second)
	load.stop()
	stopped = true
	fsmN, oursN, all := load.counts()
	lost, failures := load.lostInStop(fsmStopBegan, fsmStopped)
	t.Logf("pod creates every %s across the takeover: %d admitted by FSM, %d by ours, %d failed (%d of them lost by FSM's injector as it stopped), slowest %s",
		every, fsmN, oursN, len(all), len(lost), load.slowestCreate().Round(time.Millisecond))
	for _, f := range lost {
		t.Logf("lost by FSM's injector's stop (its Shutdown has no drain): %s", f)
	}
	for i, f := range failures {
		if i == 5 {
			t.Logf("... %d more", len(failures)-i)
			break
		}
		t.Logf("failed: %s", f)
	}
	if fsmN == 0 || oursN == 0 {
		t.Errorf("admitted by FSM %d, by ours %d: the load must span the switch", fsmN, oursN)
	}
	if n := load.uninjected(); n != 0 {
		t.Errorf("%d pods admitted without a sidecar during the takeover, want 0", n)
	}
	checkServesFSMRoot(ctx, t, c, root, proc)
	// Every call serve made with this provider passed the chart's RBAC
	// (test/chart TestServerRBACIsWhatServeUses keeps it to what serve
	// uses): client-go words a refusal `User "..." cannot <verb> resource`.
	for _, line := range strings.Split(proc.logs.String(), "\n") {
		if strings.Contains(line, saUser) && strings.Contains(line, " cannot ") && strings.Contains(line, " resource ") {
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			t.Errorf("the chart's RBAC refused the server: %s", line)
		}
	}

	t.Run("FSM's bootstrap Secret owner updates beside serve", func(t *testing.T) {
		// FSM's controller handles pod adds from its informer, behind the
		// creates on a loaded machine: wait until it has seen every pod
		// ours admitted.
		waitFor(t, "FSM's controller handled every meshed pod", 2*time.Minute, func() bool {
			owner.mu.Lock()
			defer owner.mu.Unlock()
			n := owner.conflicts + len(owner.errs)
			for _, u := range owner.updates {
				n += u
			}
			return n >= oursN
		})
		// Each Update's MODIFIED event reaches the test's watch after the
		// Update returned, by as long as a loaded machine takes to deliver
		// it: wait for the watch to have seen every one of them (a fixed
		// second was a race with that delivery), then a second more for a
		// write of ours, if any, to show too.
		waitFor(t, "the Secret watch to deliver FSM's controller's Updates", time.Minute, func() bool {
			owner.mu.Lock()
			defer owner.mu.Unlock()
			got, err := writes()
			if err != nil {
				t.Fatal(err)
			}
			for name, n := range owner.updates {
				if got[name] < n {
					return false
				}
			}
			return true
		})
		time.Sleep(time.Second)
		var secrets corev1.SecretList
		if err := c.List(ctx, &secrets, client.InNamespace("app"), client.HasLabels{"fsm-proxy-uuid"}); err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) != oursN {
			t.Errorf("%d bootstrap Secrets for %d pods our injector admitted", len(secrets.Items), oursN)
		}
		owner.mu.Lock()
		updates, conflicts, errs := owner.updates, owner.conflicts, owner.errs
		owner.mu.Unlock()
		got, err := writes()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets.Items {
			if n := len(s.OwnerReferences); n != 1 || s.OwnerReferences[0].Kind != "Pod" {
				t.Errorf("Secret %s ownerReferences %+v, want exactly its pod once", s.Name, s.OwnerReferences)
			}
			// Every write after the create is FSM's one Update: ours
			// writes nothing to a live pod's Secret.
			if got[s.Name] != updates[s.Name] || updates[s.Name] != 1 {
				t.Errorf("Secret %s: %d writes after create, FSM's controller updated it %d times (want 1 and 1: no write of ours)", s.Name, got[s.Name], updates[s.Name])
			}
		}
		if conflicts != 0 || len(errs) != 0 {
			t.Errorf("FSM's controller: %d conflicts, errors %v", conflicts, errs)
		}
		t.Logf("%d bootstrap Secrets, each updated once by FSM's controller, %d conflicts", len(secrets.Items), conflicts)
	})
	if rollback {
		t.Run("rollback to FSM", func(t *testing.T) {
			rollbackUnderLoad(ctx, t, takenOver{env: env, helm: h, cn: cn, root: root, bin: bin, ours: proc, fsmPod: fsmDep.Spec.Template.Labels, values: steps[len(steps)-1]})
		})
	}
	return len(failures)
}

func TestLostInStop(t *testing.T) {
	began := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ended := began.Add(time.Second)
	const closed = `Internal error occurred: failed calling webhook "fsm-inject.k8s.io": failed to call webhook: Post "https://fsm-injector.fsm-system.svc:9090/mutate-pod-creation?timeout=10s": write tcp: use of closed network connection`
	for _, tc := range []struct {
		name     string
		err      string
		at       time.Time
		wantLost bool
	}{
		{"connection closed during the stop", closed, began.Add(500 * time.Millisecond), true},
		{"in flight when the stop began", closed, began.Add(-5 * time.Second), true},
		{"after the stop", closed, ended.Add(time.Millisecond), false},
		{"long before the stop", closed, began.Add(-31 * time.Second), false},
		{"untrusted certificate during the stop", `failed calling webhook "fsm-inject.k8s.io": tls: failed to verify certificate: x509: certificate signed by unknown authority`, began, false},
		{"another webhook's lost connection", `failed calling webhook "validate.example.com": EOF`, began, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &podLoad{}
			l.record(tc.at, "", errors.New(tc.err))
			lost, other := l.lostInStop(began, ended)
			if got := len(lost) == 1; got != tc.wantLost || len(lost)+len(other) != 1 {
				t.Errorf("lost %v, other %v; want lost=%v", lost, other, tc.wantLost)
			}
		})
	}
}
