//go:build e2enode

package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

const (
	// secretWriterPods is how many meshed pods each writer starts
	// (FSM_NODE_SECRETWRITER_PODS overrides it), at secretWriterRate a second.
	secretWriterPods = 40
	secretWriterRate = 10
	// writerLabel marks the pods of one writer's round.
	writerLabel = "fsm-node-test/secret-writer"
	// Serve's metrics (the writer's, issue 20 design (b)).
	secretsWrittenMetric = "fsm_webhooks_injector_bootstrap_secrets_written_total"
	secretDelayMetric    = "fsm_webhooks_injector_secret_delay_seconds"
	handoffsMetric       = "fsm_webhooks_injector_bootstrap_secret_handoffs_total"
)

// TestBootstrapSecretWriterOnNode runs meshed pods under the kubelet with
// each bootstrap Secret writer of serve (--bootstrap-secret-writer, chart
// value fsm.webhooks.bootstrapSecretWriter): admission (the Secret is
// created inside the admission, before the pod exists) and controller (the
// admission only patches the pod; serve creates the Secret once its informer
// sees the pod stored, and the kubelet, which does not start a pod whose
// Secret volume is missing, retries the mount with back-off meanwhile).
// With either, every pod must run with its sidecar, its Secret must exist
// with the injector's labels and no owner, the replicas' counters must say
// that writer wrote every Secret, and the Secrets must go with the pods;
// with the admission writer no mount may find the Secret missing. The
// figures (create→Running, FailedMount events) are logged, one line per
// writer, not asserted: they depend on the machine's load (under load the
// kubelet's secret cache fails some mounts with either writer).
func TestBootstrapSecretWriterOnNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	n := secretWriterPods
	if v, err := strconv.Atoi(os.Getenv("FSM_NODE_SECRETWRITER_PODS")); err == nil && v > 0 {
		n = v
	}
	mainJS, err := os.ReadFile("testdata/sidecar/main.js")
	if err != nil {
		t.Fatal(err)
	}
	specs, pulls := meshedPodImages(ctx, t)
	// ClusterDNS: the sidecars reach their repo by the fsm-controller
	// Service's name.
	c := node.Start(t, node.Options{Images: append(specs, fsmWebhooksImage(t)), Pulls: pulls, ClusterDNS: true})
	helm := installChart(ctx, t, c)
	waitWebhooksReady(t, c, chartImage)
	repoURL := startRepo(ctx, t, c)

	// Watches outlive cs's one-minute client timeout (see TestSecretLife).
	wcfg := rest.CopyConfig(c.Config)
	wcfg.Timeout = 0
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		t.Fatal(err)
	}

	// The FailedMount count below must see what it counts: a pod whose
	// Secret volume names no Secret gets FailedMount events saying so, in
	// the words the rounds look for.
	t.Run("a missing Secret volume gives FailedMount events", func(t *testing.T) {
		const ns, missing = "mount-control", "no-such-secret"
		c.CreateNamespace(t, ns, nil)
		p := writerTestPod("missing-secret", "none")
		p.Annotations = nil
		p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: missing}}}}
		// The kubelet ignores a volume no container mounts (the sidecar
		// mounts the bootstrap Secret's).
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/s"}}
		if _, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, "a FailedMount event of pod "+p.Name+" saying Secret "+missing+" was not found", 2*time.Minute, func(ctx context.Context) error {
			for _, e := range failedMounts(ctx, t, c.Clientset, ns)[p.Name] {
				if strings.Contains(e.message, fmt.Sprintf("secret %q not found", missing)) {
					return nil
				}
			}
			return fmt.Errorf("none yet: %s", podsSummary(ctx, c.Clientset, ns))
		})
		if err := c.Clientset.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	})

	for _, writer := range []injector.SecretWriter{injector.SecretWriterAdmission, injector.SecretWriterController} {
		t.Run(string(writer), func(t *testing.T) {
			if writer != injector.SecretWriterAdmission { // the chart's default
				if _, err := helm.Upgrade(ctx, map[string]any{"fsm": map[string]any{"webhooks": map[string]any{"bootstrapSecretWriter": string(writer)}}}); err != nil {
					t.Fatalf("%v (logs in %s)", err, c.LogDir)
				}
			}
			waitWriterServing(t, c, writer)
			ns := "writer-" + string(writer)
			c.CreateNamespace(t, ns, map[string]string{monitoredByLabel: "fsm"})
			waitAdmitting(t, c, ns)
			runWriterRound(ctx, t, c, wcs, writer, ns, repoURL, mainJS, n)
		})
	}
}

// writerPod is what one round records of one pod.
type writerPod struct {
	name, uuid string
	// createAt is the client's clock as Create was called
	// (creationTimestamp is whole seconds).
	createAt time.Time
	// secretAtReturn: the Secret was readable right after Create returned.
	secretAtReturn bool
	running        time.Duration // createAt → first seen with every container running
	failedMounts   int           // FailedMount events of the pod (their counts summed)
	secretNotFound int           // of them, those saying its bootstrap Secret was not found
}

// runWriterRound creates n meshed pods in ns at secretWriterRate with the
// webhooks running writer, checks them and their Secrets, logs the figures,
// deletes the pods and checks their Secrets go.
func runWriterRound(ctx context.Context, t *testing.T, c *node.Cluster, wcs kubernetes.Interface,
	writer injector.SecretWriter, ns, repoURL string, mainJS []byte, n int) {
	cs := c.Clientset
	defer func() {
		if t.Failed() {
			t.Logf("pods: %s\nserve's logs:\n%s", podsSummary(ctx, cs, ns), serveLogTails(ctx, t, cs, 40))
		}
	}()
	pub := &publisher{repo: repoURL, mainJS: mainJS, published: map[string]time.Time{}}
	pubCtx, stopPub := context.WithCancel(ctx)
	var pubDone sync.WaitGroup
	pubDone.Go(func() { pub.run(pubCtx, cs, ns) })
	defer func() {
		stopPub()
		pubDone.Wait()
		if err := pub.err(); err != nil {
			t.Errorf("publishing codebases: %v", err)
		}
	}()

	before := scrapeWebhooks(ctx, t, cs)
	sel := writerLabel + "=" + string(writer)
	running := watchRunning(ctx, t, wcs, ns, sel)
	secrets := watchEvents(ctx, t, "Secrets", wcs.CoreV1().Secrets(ns), injector.ProxyUUIDLabel)
	podEvs := watchEvents(ctx, t, "pods", wcs.CoreV1().Pods(ns), sel)

	pods := make([]writerPod, n)
	errs := make([]error, n)
	tick := time.NewTicker(time.Second / secretWriterRate)
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		// Each create in its own goroutine: a slow admission does not
		// lower the rate.
		wg.Go(func() {
			name := fmt.Sprintf("%s-%02d", writer, i)
			at := time.Now()
			p, err := cs.CoreV1().Pods(ns).Create(ctx, writerTestPod(name, writer), metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("creating pod %s: %w", name, err)
				return
			}
			wp := writerPod{name: name, uuid: p.Labels[proxyUUIDLabel], createAt: at}
			if wp.uuid == "" {
				errs[i] = fmt.Errorf("pod %s was not injected (no %s label)", name, proxyUUIDLabel)
				return
			}
			_, err = cs.CoreV1().Secrets(ns).Get(ctx, fsmnames.BootstrapSecretName(wp.uuid), metav1.GetOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs[i] = fmt.Errorf("reading pod %s's bootstrap Secret: %w", name, err)
				return
			}
			wp.secretAtReturn = err == nil
			pods[i] = wp
		})
	}
	tick.Stop()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	c.WaitFor(t, fmt.Sprintf("%d %s pods to run every container", n, writer), 6*time.Minute, func(ctx context.Context) error {
		if err := running.ended(); err != nil {
			t.Fatal(err)
		}
		if got := running.count(); got < n {
			return fmt.Errorf("%d of %d running: %s", got, n, notRunningSummary(ctx, cs, ns, sel, 5))
		}
		return nil
	})

	mounts := failedMounts(ctx, t, cs, ns)
	var durations []time.Duration
	podsWithFailedMount, failedMountEvents, atReturn := 0, 0, 0
	selector := injector.BootstrapSecretSelector("fsm")
	for i := range pods {
		p := &pods[i]
		p.running = running.firstAt(p.name).Sub(p.createAt)
		durations = append(durations, p.running)
		secretName := fsmnames.BootstrapSecretName(p.uuid)
		for _, e := range mounts[p.name] {
			p.failedMounts += e.count
			// The kubelet's own secret cache also fails mounts ("failed to
			// sync secret cache") when its watch of the Secret is slow to
			// start, Secret there or not; only this says it was missing.
			if strings.Contains(e.message, fmt.Sprintf("secret %q not found", secretName)) {
				p.secretNotFound += e.count
			}
			t.Logf("writer=%s pod %s FailedMount x%d: %s", writer, p.name, e.count, e.message)
		}
		if p.failedMounts > 0 {
			podsWithFailedMount++
			failedMountEvents += p.failedMounts
		}
		if p.secretAtReturn {
			atReturn++
		}
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod %s runs, its bootstrap Secret %s: %v", p.name, secretName, err)
			continue
		}
		if !selector.Matches(labels.Set(s.Labels)) || s.Labels[injector.ProxyUUIDLabel] != p.uuid {
			t.Errorf("Secret %s labels %v, want the injector's (%s) with %s=%s", s.Name, s.Labels, selector, injector.ProxyUUIDLabel, p.uuid)
		}
		if len(s.OwnerReferences) != 0 {
			t.Errorf("Secret %s owners %+v, want none (issue 20: the injector's controller deletes it with the pod)", s.Name, s.OwnerReferences)
		}
	}

	// The replicas' own account: this writer wrote every Secret, but for
	// those the admission writer handed to the controller (an apiserver too
	// slow or busy for it), and no repair of a missing one was needed.
	after := scrapeWebhooks(ctx, t, cs)
	written := map[string]float64{}
	for _, w := range []string{"admission", "controller", "repair"} {
		written[w] = counterDelta(t, before, after, secretsWrittenMetric, "writer", w)
	}
	handed := counterDelta(t, before, after, handoffsMetric, "reason", "busy") + counterDelta(t, before, after, handoffsMetric, "reason", "slow")
	if written["repair"] != 0 {
		t.Errorf("%s{writer=\"repair\"} rose by %v during the %s round, want 0", secretsWrittenMetric, written["repair"], writer)
	}
	if writer == injector.SecretWriterController {
		if written["controller"] != float64(n) || written["admission"] != 0 || handed != 0 {
			t.Errorf("%s rose by admission %v, controller %v, handed off %v during the controller round, want 0, %d, 0",
				secretsWrittenMetric, written["admission"], written["controller"], handed, n)
		}
	} else {
		// The admission writes all but those it handed off; the controller
		// those, or fewer: an admission's create abandoned over budget may
		// land after all, and the controller then counts it as the
		// admission's. Each Secret is counted once.
		if written["admission"] < float64(n)-handed || written["controller"] > handed || written["admission"]+written["controller"] != float64(n) {
			t.Errorf("%s rose by admission %v, controller %v during the admission round with %v handed off, want admission >= %v, controller <= %v, together %d",
				secretsWrittenMetric, written["admission"], written["controller"], handed, float64(n)-handed, handed, n)
		}
	}
	if writer == injector.SecretWriterAdmission {
		// Written before the pod existed, but for those handed off:
		// nothing for the kubelet to wait for (TestSecretLife's guarantee).
		if late := n - atReturn; float64(late) > handed {
			t.Errorf("admission writer: %d pods' Secrets not readable when their create returned, %v handed off to the controller", late, handed)
		}
		notFound := 0
		for _, p := range pods {
			if p.secretNotFound > 0 {
				notFound++
			}
		}
		if float64(notFound) > handed {
			t.Errorf("admission writer: FailedMount events of %d pods say their Secret was not found, %v handed off; the others were written before their pod", notFound, handed)
		}
	}
	delayCount, delaySum := histogramDelta(t, before, after, secretDelayMetric)
	delay := "none"
	if delayCount > 0 {
		delay = fmt.Sprintf("%d mean=%s", delayCount, time.Duration(delaySum/float64(delayCount)*float64(time.Second)).Round(100*time.Microsecond))
	}
	var toSecret []time.Duration
	for _, p := range pods {
		if at := secrets.firstAt(fsmnames.BootstrapSecretName(p.uuid)); !at.IsZero() {
			toSecret = append(toSecret, at.Sub(p.createAt))
		}
	}

	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("figures: writer=%s pods=%d create→running p50=%s p90=%s max=%s failedMount pods=%d events=%d secret-not-found=%d"+
		" | secret at create return=%d/%d create→secret watched p50=%s max=%s | written admission=%v controller=%v repair=%v (handed off %v) | serve's admission→secret %s",
		writer, n, r(percentile(durations, 0.50)), r(percentile(durations, 0.90)), r(percentile(durations, 1)),
		podsWithFailedMount, failedMountEvents, secretNotFound(pods),
		atReturn, n, r(percentile(toSecret, 0.50)), r(percentile(toSecret, 1)),
		written["admission"], written["controller"], written["repair"], handed, delay)

	// Every Secret goes with its pod, within TestSecretLife's bound.
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, fmt.Sprintf("the %d %s pods and their Secrets to be deleted", n, writer), 3*time.Minute, func(ctx context.Context) error {
		for _, l := range []*eventLog{podEvs, secrets} {
			if err := l.ended(); err != nil {
				t.Fatal(err)
			}
		}
		left := 0
		for _, p := range pods {
			if podEvs.deletedAt(p.name).IsZero() || secrets.deletedAt(fsmnames.BootstrapSecretName(p.uuid)).IsZero() {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d of %d pods or their Secrets not deleted yet", left, n)
		}
		return nil
	})
	var lag []time.Duration
	for _, p := range pods {
		secret := fsmnames.BootstrapSecretName(p.uuid)
		d := secrets.deletedAt(secret).Sub(podEvs.deletedAt(p.name))
		lag = append(lag, d)
		if d > secretLifeDeleteBound {
			t.Errorf("Secret %s deleted %s after its pod %s, want within %s", secret, d, p.name, secretLifeDeleteBound)
		}
	}
	if left := bootstrapSecretNames(ctx, t, cs, ns); len(left) > 0 {
		t.Errorf("bootstrap Secrets left in %s after every pod was deleted: %v", ns, left)
	}
	for name, evs := range secrets.all() {
		for _, e := range evs {
			if len(e.owners) > 0 {
				t.Errorf("Secret %s had owners %+v after a %s event: nobody here may write them", name, e.owners, e.typ)
			}
		}
	}
	t.Logf("writer=%s pod DELETE → Secret DELETE p50=%s max=%s (bound %s)", writer, r(percentile(lag, 0.5)), r(percentile(lag, 1)), secretLifeDeleteBound)
}

// writerTestPod is the lightest meshed pod the node tests run: the
// toolbox's pause, injected.
func writerTestPod(name string, writer injector.SecretWriter) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{writerLabel: string(writer)},
			Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"},
		},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "app", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever, Args: []string{"pause"},
			}},
		},
	}
}

// waitWriterServing waits until the webhook Deployment has rolled out and
// its only pods are Ready replicas whose serve runs writer: a terminating
// replica of the other writer would still admit some pods.
func waitWriterServing(t *testing.T, c *node.Cluster, writer injector.SecretWriter) {
	t.Helper()
	waitWebhooksReady(t, c, chartImage)
	c.WaitFor(t, "only webhook replicas running --bootstrap-secret-writer="+string(writer), 2*time.Minute, func(ctx context.Context) error {
		pods, err := c.Clientset.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhooks"})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if got := writerOf(p); got != writer || p.DeletionTimestamp != nil || !podReady(p) {
				return fmt.Errorf("pod %s: writer %s, deleting %v, Ready %v", p.Name, got, p.DeletionTimestamp != nil, podReady(p))
			}
		}
		return nil
	})
}

// writerOf is the --bootstrap-secret-writer a webhook pod's serve runs with
// (its default when the flag is absent).
func writerOf(p *corev1.Pod) injector.SecretWriter {
	for _, ct := range p.Spec.Containers {
		for _, a := range ct.Args {
			if v, ok := strings.CutPrefix(a, "--bootstrap-secret-writer="); ok {
				return injector.SecretWriter(v)
			}
		}
	}
	return injector.SecretWriterAdmission
}

// runningLog records, by pod name, when a watch first saw each pod with
// every container started and running (notRunning empty).
type runningLog struct {
	*watchEnd
	mu    sync.Mutex
	first map[string]time.Time
}

// watchRunning watches the pods of ns matching selector (watchLabelled).
func watchRunning(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string) *runningLog {
	t.Helper()
	l := &runningLog{first: map[string]time.Time{}}
	l.watchEnd = watchLabelled(ctx, t, "pods", cs.CoreV1().Pods(ns), selector, func(ev watch.Event) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok || notRunning(p) != "" {
			return
		}
		at := time.Now()
		l.mu.Lock()
		if _, seen := l.first[p.Name]; !seen {
			l.first[p.Name] = at
		}
		l.mu.Unlock()
	})
	return l
}

func (l *runningLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.first)
}

func (l *runningLog) firstAt(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first[name]
}

// firstAt is when name's first event arrived, or zero.
func (l *eventLog) firstAt(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if evs := l.events[name]; len(evs) > 0 {
		return evs[0].at
	}
	return time.Time{}
}

// notRunningSummary names up to limit pods matching selector that do not run
// yet, with why and their events.
func notRunningSummary(ctx context.Context, cs kubernetes.Interface, ns, selector string, limit int) string {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err.Error()
	}
	var out []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if why := notRunning(p); why != "" && len(out) < limit {
			out = append(out, fmt.Sprintf("[%s: %s; events:%s]", p.Name, why, podEvents(ctx, cs, p)))
		}
	}
	return strings.Join(out, " ")
}

// mountFailure is one FailedMount event of a pod.
type mountFailure struct {
	count   int
	message string
}

// failedMounts lists ns's FailedMount events by pod name; an event the
// kubelet repeated counts as many times as it says.
func failedMounts(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) map[string][]mountFailure {
	t.Helper()
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.AndSelectors(
		fields.OneTermEqualSelector("reason", "FailedMount"),
		fields.OneTermEqualSelector("involvedObject.kind", "Pod"),
	).String()})
	if err != nil {
		t.Fatalf("listing FailedMount events in %s: %v", ns, err)
	}
	out := map[string][]mountFailure{}
	for _, e := range evs.Items {
		out[e.InvolvedObject.Name] = append(out[e.InvolvedObject.Name], mountFailure{count: max(int(e.Count), 1), message: e.Message})
	}
	return out
}

func secretNotFound(pods []writerPod) int {
	n := 0
	for _, p := range pods {
		n += p.secretNotFound
	}
	return n
}

// scrapeWebhooks reads serve's metrics (port 8080) from every webhook
// replica, by pod name.
func scrapeWebhooks(ctx context.Context, t *testing.T, cs kubernetes.Interface) map[string]map[string]*dto.MetricFamily {
	t.Helper()
	out := map[string]map[string]*dto.MetricFamily{}
	for _, p := range webhookPods(ctx, t, cs) {
		if p.DeletionTimestamp != nil {
			continue
		}
		fams, err := scrapeMetrics(ctx, p.Status.PodIP)
		if err != nil {
			t.Fatalf("metrics of webhook pod %s: %v", p.Name, err)
		}
		out[p.Name] = fams
	}
	return out
}

func scrapeMetrics(ctx context.Context, podIP string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:8080/metrics", podIP), nil)
	if err != nil {
		return nil, err
	}
	resp, err := direct.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// counterDelta is how much counter name's series with label=value rose,
// summed over the replicas; both scrapes must be of the same replicas (a
// restarted one would reset its counters).
func counterDelta(t *testing.T, before, after map[string]map[string]*dto.MetricFamily, name, label, value string) float64 {
	t.Helper()
	sameReplicas(t, before, after)
	sum := func(scrape map[string]map[string]*dto.MetricFamily) float64 {
		v := 0.0
		for _, fams := range scrape {
			for _, m := range fams[name].GetMetric() {
				if slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
					v += m.GetCounter().GetValue()
				}
			}
		}
		return v
	}
	return sum(after) - sum(before)
}

// histogramDelta is how many observations histogram name gained over the
// replicas, and their sum.
func histogramDelta(t *testing.T, before, after map[string]map[string]*dto.MetricFamily, name string) (uint64, float64) {
	t.Helper()
	sameReplicas(t, before, after)
	total := func(scrape map[string]map[string]*dto.MetricFamily) (n uint64, sum float64) {
		for _, fams := range scrape {
			for _, m := range fams[name].GetMetric() {
				n += m.GetHistogram().GetSampleCount()
				sum += m.GetHistogram().GetSampleSum()
			}
		}
		return n, sum
	}
	n0, s0 := total(before)
	n1, s1 := total(after)
	return n1 - n0, s1 - s0
}

func sameReplicas(t *testing.T, before, after map[string]map[string]*dto.MetricFamily) {
	t.Helper()
	var b, a []string
	for k := range before {
		b = append(b, k)
	}
	for k := range after {
		a = append(a, k)
	}
	slices.Sort(b)
	slices.Sort(a)
	if !slices.Equal(a, b) {
		t.Fatalf("webhook replicas changed during the round (%v, then %v): their counters cannot be compared", b, a)
	}
}

// serveLogTails is the last lines of each webhook replica's log.
func serveLogTails(ctx context.Context, t *testing.T, cs kubernetes.Interface, lines int64) string {
	t.Helper()
	var b strings.Builder
	pods, err := cs.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhooks"})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		raw, err := cs.CoreV1().Pods(chartNS).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(ctx)
		if err != nil {
			raw = []byte(err.Error())
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", p.Name, raw)
	}
	return b.String()
}
