//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

const (
	// rolloutTag is a second tag of the same image: an upgrade to it changes
	// the pod template and so rolls both replicas.
	rolloutTag = "rollout"
	// loadRate is the steady pod-create rate kept up for a whole disruption.
	loadRate = 20
	// maxInFlight caps the creates in flight: while an apiserver is slow the
	// load skips ticks (counted; the rate check then fails) rather than
	// piling up goroutines and connections that slow it further.
	maxInFlight = 64
)

// TestRollout creates pods at a steady rate in a monitored namespace while
// the webhook Deployment is disrupted (a helm upgrade rolling both replicas,
// one replica's container stopped under the kubelet) and requires every
// create to be admitted and injected: the webhooks' failurePolicy is Fail,
// so a lost admission is a pod a user could not create.
func TestRollout(t *testing.T) {
	img := fsmWebhooksImage(t)
	second := img
	second.Tag = "flomesh/fsm-webhooks:" + rolloutTag
	// Registered before Start, so it runs after the node's teardown: the
	// containerd restart below must not leave a process behind.
	var c *node.Cluster
	t.Cleanup(func() {
		if c == nil {
			return
		}
		if left := c.Leftovers(); len(left) > 0 {
			t.Errorf("node processes left after the teardown:\n%s", strings.Join(left, "\n"))
		}
	})
	c = node.Start(t, node.Options{Images: []images.Spec{img, second}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	helm := installChart(ctx, t, c)
	cs := c.Clientset
	waitWebhooksReady(t, c, chartImage)
	const ns = "rollout"
	c.CreateNamespace(t, ns, map[string]string{"flomesh.io/monitored-by": "fsm"})
	waitAdmitting(t, c, ns)

	t.Run("helm upgrade rolls both replicas without a failed admission", func(t *testing.T) {
		l := startLoad(ctx, cs, ns, "upgrade")
		time.Sleep(5 * time.Second) // steady state, for the latency baseline
		rollStart := time.Now()
		if _, err := helm.Upgrade(ctx, map[string]any{"fsm": map[string]any{"webhooks": map[string]any{"imageTag": rolloutTag}}}); err != nil {
			l.stop()
			t.Fatal(err)
		}
		waitWebhooksReady(t, c, second.Tag)
		rollEnd := time.Now()
		time.Sleep(3 * time.Second) // the old pods' endpoints are gone
		res := l.stop()
		t.Logf("rollout took %s", rollEnd.Sub(rollStart).Round(100*time.Millisecond))
		checkLoad(ctx, t, cs, ns, "upgrade", res, l.skipped, rollStart, rollEnd, true)
	})

	// A graceful stop (SIGTERM, as when a runtime or node agent stops a
	// container without deleting its pod) must lose nothing: the replica
	// drains, fails readiness, and kube-proxy routes around it. A SIGKILL
	// cannot: what was in flight on the killed connections fails with the
	// apiserver's webhook call (it does not retry), so that case is measured
	// and must heal with every created pod injected, not count zero failures.
	for _, tc := range []struct {
		name, prefix string
		stopArgs     []string
		mustNotFail  bool
	}{
		{"one replica's container stopped (SIGTERM)", "stop", []string{"stop", "--timeout", "30"}, true},
		{"one replica's container killed (SIGKILL)", "kill", []string{"stop"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stopReplica(ctx, t, c, cs, ns, tc.prefix, tc.stopArgs, second.Tag, tc.mustNotFail)
		})
	}

	t.Run("containerd restarted: replicas keep running, no admission fails, a new pod starts", func(t *testing.T) {
		restartContainerd(ctx, t, c, cs, ns)
	})
}

// restartContainerd runs the load through a node-level restart of
// containerd (SIGTERM and start, as after an upgrade or `systemctl restart`).
// The webhook containers run on under their shims and serve throughout, so
// no create may fail; the kubelet must reconnect: the same pods stay Ready
// and a pod created after the restart starts within restartBound.
func restartContainerd(ctx context.Context, t *testing.T, c *node.Cluster, cs kubernetes.Interface, ns string) {
	// Bound on the kubelet's reconnection: it polls the runtime every few
	// seconds (PLEG relist 1 s, runtime status 5 s) and restarts nothing.
	const restartBound = time.Minute
	d, err := cs.AppsV1().Deployments(chartNS).Get(ctx, "fsm-webhooks", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := d.Spec.Template.Spec.Containers[0].Image
	waitWebhooksReady(t, c, image)
	before := map[string]int32{} // pod UID -> restarts
	for _, p := range webhookPods(ctx, t, cs) {
		before[string(p.UID)] = p.Status.ContainerStatuses[0].RestartCount
	}
	l := startLoad(ctx, cs, ns, "containerd")
	time.Sleep(5 * time.Second)
	from := time.Now()
	away, err := c.RestartContainerd(ctx)
	if err != nil {
		l.stop()
		t.Fatal(err)
	}
	probe, err := cs.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "after-containerd-restart"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever, Args: []string{"pause"},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		l.stop()
		t.Fatal(err)
	}
	c.WaitFor(t, "a pod created after the restart Running and the webhooks whole", restartBound, func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods(probe.Namespace).Get(ctx, probe.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(p) {
			return fmt.Errorf("pod %s: %s", p.Name, podReasons(p))
		}
		return deploymentReady(ctx, cs, image)
	})
	to := time.Now()
	time.Sleep(3 * time.Second)
	res := l.stop()
	t.Logf("containerd away %s; new pod Running and webhooks Ready %s after the restart began",
		away.Round(10*time.Millisecond), to.Sub(from).Round(100*time.Millisecond))
	checkLoad(ctx, t, cs, ns, "containerd", res, l.skipped, from, to, true)
	for _, p := range webhookPods(ctx, t, cs) {
		restarts, ok := before[string(p.UID)]
		switch {
		case !ok:
			t.Errorf("webhook pod %s is new: the restart replaced a replica", p.Name)
		case p.Status.ContainerStatuses[0].RestartCount != restarts:
			t.Errorf("webhook pod %s restarted its container (%d -> %d): the containerd restart reached it", p.Name, restarts, p.Status.ContainerStatuses[0].RestartCount)
		}
	}
}

// stopReplica runs the load while one Ready webhook replica's container is
// stopped with crictl stopArgs, until the Deployment is whole again.
func stopReplica(ctx context.Context, t *testing.T, c *node.Cluster, cs kubernetes.Interface, ns, prefix string, stopArgs []string, image string, mustNotFail bool) {
	// Not a pod of the old ReplicaSet still in its preStop sleep.
	var victim corev1.Pod
	for _, p := range webhookPods(ctx, t, cs) {
		if p.DeletionTimestamp == nil && podReady(&p) {
			victim = p
			break
		}
	}
	if victim.Name == "" {
		t.Fatal("no Ready webhook pod that is not terminating")
	}
	restarts := victim.Status.ContainerStatuses[0].RestartCount
	l := startLoad(ctx, cs, ns, prefix)
	time.Sleep(5 * time.Second)
	killStart := time.Now()
	out, err := c.Crictl(ctx, "ps", "-q", "--label", "io.kubernetes.pod.name="+victim.Name, "--name", "fsm-webhooks")
	if err != nil {
		l.stop()
		t.Fatalf("crictl ps: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	if id == "" || strings.Contains(id, "\n") {
		l.stop()
		t.Fatalf("crictl ps for pod %s: want one container id, got %q", victim.Name, id)
	}
	if out, err := c.Crictl(ctx, append(stopArgs, id)...); err != nil {
		l.stop()
		t.Fatalf("crictl %s %s: %v: %s", strings.Join(stopArgs, " "), id, err, out)
	}
	c.WaitFor(t, "the stopped replica restarted and both Ready again", 3*time.Minute, func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods(chartNS).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rc := p.Status.ContainerStatuses[0].RestartCount; rc <= restarts || !podReady(p) {
			return fmt.Errorf("pod %s restarts %d, ready %v", p.Name, rc, podReady(p))
		}
		return deploymentReady(ctx, cs, image)
	})
	killEnd := time.Now()
	time.Sleep(3 * time.Second)
	res := l.stop()
	t.Logf("replica %s healed %s after crictl %s", victim.Name, killEnd.Sub(killStart).Round(100*time.Millisecond), strings.Join(stopArgs, " "))
	checkLoad(ctx, t, cs, ns, prefix, res, l.skipped, killStart, killEnd, mustNotFail)
}

// waitWebhooksReady waits for the webhook Deployment to run 2 Ready replicas
// of image and nothing else.
func waitWebhooksReady(t *testing.T, c *node.Cluster, image string) {
	t.Helper()
	c.WaitFor(t, "deployment fsm-webhooks to run 2 ready replicas of "+image, 4*time.Minute, func(ctx context.Context) error {
		return deploymentReady(ctx, c.Clientset, image)
	})
}

// waitAdmitting waits until three dry-run pod creates in a row are injected
// through the Service: Ready replicas are not yet routed to until kube-proxy
// has synced their endpoints (one run lost its first create to "connection
// refused" before any disruption began).
func waitAdmitting(t *testing.T, c *node.Cluster, ns string) {
	t.Helper()
	ok := 0
	c.WaitFor(t, "three dry-run pod creates in a row injected in "+ns, 2*time.Minute, func(ctx context.Context) error {
		p, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, loadPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			ok = 0
			return err
		}
		if p.Labels[injector.ProxyUUIDLabel] == "" {
			ok = 0
			return fmt.Errorf("dry-run pod not injected: labels %v", p.Labels)
		}
		if ok++; ok < 3 {
			return fmt.Errorf("%d dry-run creates injected in a row", ok)
		}
		return nil
	})
}

func deploymentReady(ctx context.Context, cs kubernetes.Interface, image string) error {
	d, err := cs.AppsV1().Deployments(chartNS).Get(ctx, "fsm-webhooks", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
		return fmt.Errorf("deployment image %s, want %s", got, image)
	}
	if !deploymentSettled(d) {
		return fmt.Errorf("deployment generation %d observed %d: %d replicas, %d updated, %d ready; pods: %s",
			d.Generation, d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, podsSummary(ctx, cs, chartNS))
	}
	return nil
}

// deploymentSettled is kubectl rollout status's condition: the new
// ReplicaSet has every replica, all Ready, and no old pod is left.
func deploymentSettled(d *appsv1.Deployment) bool {
	want := *d.Spec.Replicas
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want
}

func webhookPods(ctx context.Context, t *testing.T, cs kubernetes.Interface) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no webhook pods")
	}
	return pods.Items
}

// create is one pod create of the load.
type create struct {
	name    string // the created pod's name; empty when the create failed
	at      time.Time
	latency time.Duration
	err     error
}

type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    []create
	// skipped counts ticks without a create: maxInFlight were in flight.
	skipped int
}

// startLoad creates pods in ns at loadRate per second, each create in its
// own goroutine so a slow admission does not lower the rate (up to
// maxInFlight at once), until stop.
// The pods are bare (no controller re-creates them) and never scheduled:
// the injected sidecar's images are not on the node.
func startLoad(ctx context.Context, cs kubernetes.Interface, ns, prefix string) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	tick := time.NewTicker(time.Second / loadRate)
	inFlight := make(chan struct{}, maxInFlight)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case inFlight <- struct{}{}:
			default:
				l.skipped++ // read only after wg.Wait
				continue
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() { <-inFlight }()
				start := time.Now()
				// Not ctx: a create in flight at stop is counted, not cancelled.
				cctx, ccancel := context.WithTimeout(context.Background(), 45*time.Second)
				defer ccancel()
				p, err := cs.CoreV1().Pods(ns).Create(cctx, loadPod(prefix), metav1.CreateOptions{})
				r := create{at: start, latency: time.Since(start), err: err}
				if err == nil {
					r.name = p.Name
				}
				l.mu.Lock()
				l.res = append(l.res, r)
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

func (l *load) stop() []create {
	l.cancel()
	l.wg.Wait()
	return l.res
}

func loadPod(prefix string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: prefix + "-",
			Labels:       map[string]string{"load": prefix},
			Annotations:  map[string]string{injector.SidecarInjectionAnnotation: "enabled"},
		},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"fsm-node/never": "true"},
			Containers: []corev1.Container{{
				Name: "app", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever, Args: []string{"pause"},
			}},
		},
	}
}

// checkLoad fails the test for every failed create (when mustNotFail) and
// every created pod without its bootstrap Secret, and logs the create rate and p99 latency
// inside [from, to) against outside it.
func checkLoad(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, prefix string, res []create, skipped int, from, to time.Time, mustNotFail bool) {
	t.Helper()
	var failed []string
	var during, steady []time.Duration
	for _, r := range res {
		if r.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.at.Format("15:04:05.000"), r.err))
		}
		if !r.at.Before(from) && r.at.Before(to) {
			during = append(during, r.latency)
		} else {
			steady = append(steady, r.latency)
		}
	}
	t.Logf("%s: %d creates, %d failed, %d ticks skipped (%d in flight); p99 %s during the disruption (%d creates), %s outside it (%d)",
		prefix, len(res), len(failed), skipped, maxInFlight, p99(during), len(during), p99(steady), len(steady))
	if len(failed) > 0 && mustNotFail {
		t.Errorf("%d of %d pod creates failed:\n%s", len(failed), len(res), strings.Join(failed, "\n"))
	}
	if n := (to.Sub(from).Seconds() * loadRate) / 2; float64(len(during)) < n {
		t.Errorf("%d creates during the disruption, want about %.0f (the load did not keep its rate)", len(during), 2*n)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "load=" + prefix})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range secrets.Items {
		have[s.Name] = true
	}
	var bare []string
	for _, p := range pods.Items {
		id := p.Labels[injector.ProxyUUIDLabel]
		if id == "" || !have[fsmnames.BootstrapSecretPrefix+id] {
			bare = append(bare, p.Name)
		}
	}
	if created := len(res) - len(failed); len(pods.Items) != created {
		t.Errorf("%d pods labelled load=%s, %d creates succeeded", len(pods.Items), prefix, created)
	}
	if len(bare) > 0 {
		t.Errorf("%d of %d pods not injected or without their bootstrap Secret: %v", len(bare), len(pods.Items), bare)
	}
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[(len(d)*99+99)/100-1].Round(time.Millisecond)
}
