package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// runWrites counts the apiserver's writes per pod over the pods' whole life
// in each phase: create n pods, delete them, wait until they and (meshed)
// their bootstrap Secrets are gone. kube-apiserver's apiserver_request_total
// counts every client's requests (the load tool's, serve's controllers',
// the webhook's Secret writes), so the count is the design's cost, not one
// component's. The idle period before measures the background (leases) to
// subtract.
func runWrites(ctx context.Context, c config, cfg *rest.Config, cl client.Client, hook injectorUnderTest, toolHooks phaseWebhooks, template map[string][]byte, secrets *secretWatch) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	scrape := func() (map[writeKey]float64, error) {
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("scraping kube-apiserver /metrics: %w", err)
		}
		fams, err := parseMetrics(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if _, ok := fams["apiserver_request_total"]; !ok {
			return nil, fmt.Errorf("kube-apiserver /metrics has no apiserver_request_total")
		}
		return fams.apiserverWrites(), nil
	}
	warmUpUUID, err := podUUID(ctx, cl, nsMeshed, "warm-up")
	if err != nil {
		return err
	}
	idleStart := time.Now()
	i0, err := scrape()
	if err != nil {
		return err
	}
	time.Sleep(c.idle)
	i1, err := scrape()
	if err != nil {
		return err
	}
	idle, idleTook := diffWrites(i0, i1), time.Since(idleStart)
	fmt.Printf("writes per pod over its life: create %d pods over %d namespace(s) (closed loop, %d concurrent), delete them one by one, wait until they and their bootstrap Secrets are gone (at most %s); kube-apiserver's apiserver_request_total, all clients, dry runs excluded, minus the background of a %.0f s idle period (%s)\n",
		c.pods, c.spread, c.conc, c.writesWait, idleTook.Seconds(), writesText(idle))
	for _, ns := range c.phases {
		meshed := ns == nsMeshed
		stopWebhook, err := toolHooks.start(ctx, ns)
		if err != nil {
			return err
		}
		stopProfiles, err := startProfiles(ctx, c, cfg, meshed)
		if err != nil {
			return err
		}
		before, err := scrape()
		if err != nil {
			return err
		}
		start := time.Now()
		res := createPods(ctx, cl, load{ns: ns, spread: c.spread, prefix: "p-", n: c.pods, conc: c.conc, secretData: template})
		created := len(res.calls) - countErrors(res.calls)
		// The configuration's delete is counted: one write per phase, not
		// per pod.
		if err := stopWebhook(); err != nil {
			return fmt.Errorf("removing the %s phase's webhook: %w", ns, err)
		}
		if meshed {
			// Deleting a pod before its Secret is written (controller
			// writer) would save a write no running pod saves.
			for _, line := range secretLines(awaitSecrets(ctx, secrets, res, false), false) {
				fmt.Println("  " + line)
			}
			// Whatever adopts Secrets does it while the pods live.
			fmt.Println("  " + adoption(ctx, cl, time.Now()))
		}
		delStart := time.Now()
		if err := deleteAll(ctx, cl, ns, c.spread, c.pods, c.conc); err != nil {
			return err
		}
		gone, left := waitGone(ctx, cl, namespacesOf(c.spread, ns), warmUpUUID, c.writesWait)
		// Writes that trail the last observed deletion (a controller's
		// requeue) land within a few seconds.
		time.Sleep(2 * time.Second)
		after, err := scrape()
		if err != nil {
			return err
		}
		took := time.Since(start)
		if err := stopProfiles(); err != nil {
			return err
		}
		tag := phaseTag(ns, hook)
		fmt.Printf("%s: %d pods created (%d errors), deleted, %s %.1f s after the deletes started; phase %.1f s  %s\n",
			phaseLabels[ns], created, len(res.calls)-created, gone, time.Since(delStart).Seconds()-2, took.Seconds(), tag)
		if left != "" {
			fmt.Println("  " + left)
		}
		for _, r := range writesPerPod(before, after, idle, idleTook, took, max(1, created)) {
			fmt.Printf("  %-22s %6.2f per pod  (%.0f requests, background %.1f)\n", r.key.resource+" "+r.key.verb, r.perPod, r.total, r.background)
		}
	}
	return nil
}

func writesText(w map[writeKey]float64) string {
	if len(w) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range w {
		parts = append(parts, fmt.Sprintf("%s %s %.0f", k.resource, k.verb, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func countErrors(calls []call) int {
	n := 0
	for _, c := range calls {
		if c.err != nil {
			n++
		}
	}
	return n
}

func podUUID(ctx context.Context, cl client.Client, ns, name string) (string, error) {
	var pod corev1.Pod
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		return "", err
	}
	return pod.Labels[injector.ProxyUUIDLabel], nil
}

// deleteAll deletes pods p-0…p-(n-1) (and, where the client wrote them,
// its Secrets) one request each, as controllers delete pods, conc at a time.
func deleteAll(ctx context.Context, cl client.Client, base string, spread, n, conc int) error {
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	jobs := make(chan int)
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				ns := podNamespace(base, i, spread)
				name := "p-" + strconv.Itoa(i)
				objs := []client.Object{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}}
				if clientWritesSecret(base) {
					objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: clientSecretName(name), Namespace: ns}})
				}
				for _, o := range objs {
					if err := cl.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
						failed.Add(1)
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
					}
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d deletes in %s failed, the first: %w", failed.Load(), base, firstErr)
	}
	return nil
}

// waitGone waits until the namespaces hold no pod but the warm-up and no
// bootstrap Secret but the warm-up pod's, at most bound. It says what went
// and, if something stayed, what.
func waitGone(ctx context.Context, cl client.Client, nss []string, warmUpUUID string, bound time.Duration) (gone, left string) {
	deadline := time.Now().Add(bound)
	for {
		var pods metav1.PartialObjectMetadataList
		pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		var secrets metav1.PartialObjectMetadataList
		secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		if err := cl.List(ctx, &pods); err != nil {
			return "listing pods failed", err.Error()
		}
		if err := cl.List(ctx, &secrets, client.HasLabels{injector.ProxyUUIDLabel}); err != nil {
			return "listing Secrets failed", err.Error()
		}
		var podsLeft, secretsLeft, owned int
		for _, p := range pods.Items {
			if slices.Contains(nss, p.Namespace) && p.Name != "warm-up" {
				podsLeft++
			}
		}
		for _, s := range secrets.Items {
			if slices.Contains(nss, s.Namespace) && s.Labels[injector.ProxyUUIDLabel] != warmUpUUID {
				secretsLeft++
				if len(s.OwnerReferences) > 0 {
					owned++
				}
			}
		}
		if podsLeft == 0 && secretsLeft == 0 {
			return "pods and their bootstrap Secrets gone", ""
		}
		if time.Now().After(deadline) {
			left = fmt.Sprintf("NOT GONE after %s: %d pods, %d bootstrap Secrets", bound, podsLeft, secretsLeft)
			if owned > 0 {
				left += fmt.Sprintf(" (%d owned by their deleted pod: envtest runs no garbage collector; in a cluster kube-controller-manager's would delete each, one more secrets delete per pod than counted here)", owned)
			}
			return "waited", left
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runMemory measures serve's RSS with c.prefill meshed pods (and their
// bootstrap Secrets) in its caches, created through the injector as a
// cluster would, then under open-loop admissions at c.rate for c.duration,
// sampled every second. With c.churn each create is followed by the
// deletion of the oldest meshed pod, so the population stays at c.prefill
// (a long soak must not measure a growing cache).
func runMemory(ctx context.Context, c config, cfg *rest.Config, cl client.Client, s *serveProcess, secrets *secretWatch) error {
	tag := "[" + s.regime() + "]"
	pre := createPods(ctx, cl, load{ns: nsMeshed, spread: c.spread, prefix: "pre-", n: c.prefill, conc: c.conc})
	fmt.Printf("pre-fill: %d meshed pods through the injector over %d namespace(s), closed loop %d concurrent: %.1f pods/s, %d errors  %s\n",
		c.prefill, c.spread, c.conc, float64(len(pre.calls))/pre.elapsed.Seconds(), countErrors(pre.calls), tag)
	for _, line := range secretLines(awaitSecrets(ctx, secrets, pre, false), false) {
		fmt.Println("  " + line)
	}
	fmt.Println("  " + adoption(ctx, cl, time.Now()))
	// Oldest first; a pre-fill create that failed is deleted as NotFound
	// and not counted.
	ch := &churner{cl: cl, keep: c.prefill}
	for i := range pre.calls {
		ch.live = append(ch.live, client.ObjectKey{Namespace: podNamespace(nsMeshed, i, c.spread), Name: "pre-" + strconv.Itoa(i)})
	}
	var after func(client.ObjectKey, error)
	if c.churn {
		after = ch.created(ctx)
	}
	stopProfiles, err := startProfiles(ctx, c, cfg, true)
	if err != nil {
		return err
	}
	stop, err := s.sampler(ctx, time.Second)
	if err != nil {
		return err
	}
	churn := "no churn: the cached meshed pods grow by the load's creates"
	if c.churn {
		churn = "churn: each create is followed by the deletion of the oldest meshed pod, so the cache holds the pre-fill's count"
	}
	fmt.Printf("load: open loop, %g admissions/s for %s (%d pods over %d namespace(s)), %s\n", c.rate, c.duration, c.pods, c.spread, churn)
	res := createPods(ctx, cl, load{ns: nsMeshed, spread: c.spread, prefix: "p-", n: c.pods, rate: c.rate, after: after})
	secretReport := secretLines(awaitSecrets(ctx, secrets, res, true), true)
	deleted, deleteErrs := ch.deleted.Load(), ch.failed.Load()
	samples, err := stop()
	if err := stopProfiles(); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("sampling serve: %w", err)
	}
	printPhase(phaseLabels[nsMeshed], tag, c, res)
	created := len(res.calls) - countErrors(res.calls)
	fmt.Printf("  meshed pods in serve's cache: %d at the start, %d at the end (%d created, %d deleted, %d deletes failed; plus the warm-up pod)\n",
		countSuccesses(pre.calls), countSuccesses(pre.calls)+created-int(deleted), created, deleted, deleteErrs)
	rss := rssSeries(samples, res.start)
	hi := slices.MaxFunc(rss, func(a, b point) int { return cmp.Compare(a.v, b.v) })
	fmt.Printf("  serve RSS (VmRSS, every second): max %.1f MiB at %.0f s, last %.1f MiB  %s\n", hi.v, hi.at.Seconds(), rss[len(rss)-1].v, tag)
	for _, sp := range spans(rss, c.window) {
		fmt.Printf("    %4.0f-%4.0f s: min %6.1f  max %6.1f  last %6.1f MiB\n", sp.from.Seconds(), (sp.from + c.window).Seconds(), sp.min, sp.max, sp.last)
	}
	overHalf, grows := growth(rss)
	verdict := "no growth"
	if grows {
		verdict = "GROWS"
	}
	fmt.Printf("  growth over the second half (least squares): %+.1f MiB: %s (growth: more than 1 MiB and 2%% of the half's mean)\n", overHalf, verdict)
	for _, line := range append(secretReport, serveReport(samples, res, s.writer)...) {
		fmt.Println("  " + line)
	}
	return nil
}

func countSuccesses(calls []call) int { return len(calls) - countErrors(calls) }

// runStartup measures serve's start to ready: the first start (from nothing:
// it created the CA, serving certificates and registrations) was timed when
// the tool started it; then c.restarts times SIGTERM and a new start against
// the same apiserver, which finds those Secrets, each proven to inject.
func runStartup(ctx context.Context, c config, cl client.Client, s *serveProcess) error {
	tag := "[" + s.regime() + "]"
	fmt.Printf("start → /readyz 200 (exec to the first 200, polled every 10 ms; the apiserver already up):\n  (a) from nothing (creates the CA, three serving certificates, the registrations): %.3f s  %s\n", s.ready.Seconds(), tag)
	var restarts []time.Duration
	for i := range c.restarts {
		if err := s.stop(); err != nil {
			return fmt.Errorf("stopping serve before restart %d: %w", i+1, err)
		}
		d, err := s.launch(ctx)
		if err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		restarts = append(restarts, d)
		if err := injector.Probe(ctx, cl, chartMesh, nsMeshed); err != nil {
			return fmt.Errorf("restart %d: ready but not injecting: %w", i+1, err)
		}
		fmt.Printf("  (b) restart %d with existing Secrets (CA, serving certificates): %.3f s, then a dry-run pod injected  %s\n", i+1, d.Seconds(), tag)
	}
	if len(restarts) > 0 {
		fmt.Printf("  (b) over %d restarts: median %.3f s, max %.3f s\n", len(restarts), pct(restarts, 50).Seconds(), slices.Max(restarts).Seconds())
	}
	return nil
}

// churner keeps a phase's population of pods at keep: once more live, each
// create is followed by the deletion of the oldest pod, as rollouts replace
// pods, so a long run measures a steady state rather than a growing cache
// and etcd.
type churner struct {
	cl   client.Client
	keep int
	// secrets: the phase's client also created Secret s-<i> for pod p-<i>
	// (clientWritesSecret); it goes with its pod.
	secrets bool
	mu      sync.Mutex
	live    []client.ObjectKey // oldest first

	deleted, failed atomic.Int64
}

// created is the load's after hook: record a created pod, delete the
// oldest past keep (NotFound, a pod whose create failed, is not counted).
func (ch *churner) created(ctx context.Context) func(client.ObjectKey, error) {
	return func(pod client.ObjectKey, err error) {
		if err != nil {
			return
		}
		ch.mu.Lock()
		ch.live = append(ch.live, pod)
		if len(ch.live) <= ch.keep {
			ch.mu.Unlock()
			return
		}
		oldest := ch.live[0]
		ch.live = ch.live[1:]
		ch.mu.Unlock()
		objs := []client.Object{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: oldest.Name, Namespace: oldest.Namespace}}}
		if ch.secrets {
			objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: clientSecretName(oldest.Name), Namespace: oldest.Namespace}})
		}
		for i, o := range objs {
			switch err := ch.cl.Delete(ctx, o); {
			case err == nil && i == 0:
				ch.deleted.Add(1)
			case err != nil && !apierrors.IsNotFound(err):
				ch.failed.Add(1)
			}
		}
	}
}
