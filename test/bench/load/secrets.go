package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// serveWriterDefault is serve's --bootstrap-secret-writer default
// (cmd/fsm-webhooks options.go).
const serveWriterDefault = injector.SecretWriterAdmission

// secretWriter is who writes the bootstrap Secrets in this run and how the
// banner says so: serve's --bootstrap-secret-writer from the extra serve
// arguments, else its default; the in-process handler only writes in the
// admission. With the admission writer a Secret is stored before its pod's
// create returns; with the controller writer after it, so a returned create
// is not yet a pod its kubelet can start, and the clock runs to the Secret.
func secretWriter(inProcess bool, serveArgs []string) (writer injector.SecretWriter, text string, err error) {
	if inProcess {
		return injector.SecretWriterAdmission, "bootstrap Secrets written in the admission (the in-process handler's only writer)", nil
	}
	v, given := flagValue(serveArgs, "bootstrap-secret-writer")
	if !given {
		v = string(serveWriterDefault)
	}
	if err := injector.SecretWriter(v).Validate(); err != nil {
		return "", "", fmt.Errorf("--bootstrap-secret-writer %q: %w", v, err)
	}
	text = fmt.Sprintf("bootstrap Secrets written by the %s (--bootstrap-secret-writer=%s", v, v)
	if !given {
		text += ", serve's default"
	}
	return injector.SecretWriter(v), text + ")", nil
}

// How long the tool waits for bootstrap Secrets after a phase's last create
// returned.
const (
	// secretGrace: an open-loop phase's pods must all have their Secret this
	// long after the phase ended; those that do not are counted.
	secretGrace = 5 * time.Second
	// secretQuiet: past the grace, waiting goes on while Secrets keep
	// appearing (a closed loop's backlog), and stops after this long
	// without a new one.
	secretQuiet = 10 * time.Second
	// secretLimit bounds the whole wait.
	secretLimit = 5 * time.Minute
)

// secretWatch records when this process first saw each bootstrap Secret
// (labelled with its pod's proxy uuid) through a metadata-only watch: the
// moment a kubelet watching it could mount the pod's volume, to within the
// watch's delivery.
type secretWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time // by proxy uuid
}

// watchSecrets starts the watch and returns once it has listed the Secrets
// that exist already; it runs until ctx ends.
func watchSecrets(ctx context.Context, cfg *rest.Config) (*secretWatch, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	w := &secretWatch{seen: map[string]time.Time{}}
	inf := metadatainformer.NewFilteredMetadataInformer(mc, corev1.SchemeGroupVersion.WithResource("secrets"), metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = injector.ProxyUUIDLabel }).Informer()
	// Only the label is read: keep no managedFields or annotations of
	// thousands of Secrets in the store over a long run.
	if err := inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields, m.Annotations, m.OwnerReferences = nil, nil, nil
		}
		return o, nil
	}); err != nil {
		return nil, err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: w.add}); err != nil {
		return nil, err
	}
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("watching bootstrap Secrets: %w", context.Cause(ctx))
	}
	return w, nil
}

func (w *secretWatch) add(o any) {
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	id := m.Labels[injector.ProxyUUIDLabel]
	now := time.Now()
	w.mu.Lock()
	if _, dup := w.seen[id]; !dup {
		w.seen[id] = now
	}
	w.mu.Unlock()
}

// await waits for the Secrets of the phase's created pods: until all were
// seen, or, once past notBefore, no new one for secretQuiet; at most
// secretLimit. It returns when each was seen, those seen so far only.
func (w *secretWatch) await(ctx context.Context, calls []call, notBefore time.Time) map[string]time.Time {
	var ids []string
	for _, c := range calls {
		if c.err == nil && c.uuid != "" {
			ids = append(ids, c.uuid)
		}
	}
	start, lastNew, found := time.Now(), time.Now(), -1
	for {
		got := w.of(ids)
		if len(got) != found {
			found, lastNew = len(got), time.Now()
		}
		now := time.Now()
		if found == len(ids) || now.Sub(start) > secretLimit || (now.After(notBefore) && now.Sub(lastNew) > secretQuiet) || ctx.Err() != nil {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// of is when the Secrets of ids were seen, for those seen.
func (w *secretWatch) of(ids []string) map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		if t, ok := w.seen[id]; ok {
			out[id] = t
		}
	}
	return out
}

// secretOutcome is how a phase's created pods got their bootstrap Secrets.
type secretOutcome struct {
	// pods are the successful creates; unlabelled of them came back
	// without a proxy uuid (not injected: no Secret is due).
	pods, unlabelled int
	// withSecret of the rest had their Secret seen; before of those already
	// when their create returned (written in the admission).
	withSecret, before int
	// delays are, per pod with a Secret, from its create's return to the
	// Secret seen (0 when it was there first).
	delays []time.Duration
	// last is when the last of them had both its pod and its Secret stored
	// (the later of its create's return and its Secret seen), since the
	// phase started.
	last time.Duration
	// lastReturn is when the last successful create returned.
	lastReturn time.Duration
	// missingAtGrace is the pods without their Secret at the grace
	// deadline (seen later, or never).
	missingAtGrace int
}

// never is the injected pods whose Secret was never seen.
func (o secretOutcome) never() int { return o.pods - o.unlabelled - o.withSecret }

// matchSecrets pairs a phase's successful creates (started at start) with
// when their Secrets were seen, and counts those not seen by grace.
func matchSecrets(calls []call, start time.Time, seen map[string]time.Time, grace time.Time) secretOutcome {
	var o secretOutcome
	for _, c := range calls {
		if c.err != nil {
			continue
		}
		o.pods++
		o.lastReturn = max(o.lastReturn, c.at+c.took)
		if c.uuid == "" {
			o.unlabelled++
			continue
		}
		at, ok := seen[c.uuid]
		if !ok || at.After(grace) {
			o.missingAtGrace++
		}
		if !ok {
			continue
		}
		o.withSecret++
		returned := start.Add(c.at + c.took)
		d := at.Sub(returned)
		if d <= 0 {
			o.before++
		}
		o.delays = append(o.delays, max(0, d))
		o.last = max(o.last, at.Sub(start), c.at+c.took)
	}
	return o
}

// baselines are the closed-loop rates (pods/s) of the phases the later ones
// are compared with: pod + Secret (no webhook), noop (the same through a
// no-op webhook: what any webhook costs) and sized (through a webhook
// answering the injector's patch: what any injector costs); 0: not run.
type baselines struct{ secret, noop, sized float64 }

// set records ns's rate, if ns is a baseline.
func (b *baselines) set(ns string, rate float64) {
	switch ns {
	case nsSecret:
		b.secret = rate
	case nsNoop:
		b.noop = rate
	case nsSized:
		b.sized = rate
	}
}

// against is rate as a share of each baseline that ran.
func (b baselines) against(rate float64) []string {
	var out []string
	for _, x := range []struct {
		phase string
		rate  float64
	}{{"pod + Secret", b.secret}, {"no-op webhook", b.noop}, {"sized webhook", b.sized}} {
		if x.rate > 0 {
			out = append(out, fmt.Sprintf("%.0f%% of the %s phase's %.1f pods/s", 100*rate/x.rate, x.phase, x.rate))
		}
	}
	return out
}

// closedLoopSecrets is a closed-loop phase's rate measured to its last
// Secret, the figure the baselines compare with (in their phases a create
// returns with both stored), and its comparison with the baselines that
// ran.
func closedLoopSecrets(o secretOutcome, b baselines) string {
	if o.withSecret == 0 {
		return "pods with their bootstrap Secret: none"
	}
	rate := float64(o.withSecret) / o.last.Seconds()
	s := fmt.Sprintf("pods with their bootstrap Secret: %.1f pods/s (%d, the last with its Secret %.2f s after the phase started, %.2f s after the last create returned)",
		rate, o.withSecret, o.last.Seconds(), (o.last - o.lastReturn).Seconds())
	against := b.against(rate)
	if len(against) == 0 {
		return s + " (no pod + Secret, no-op or sized webhook phase in this run to compare with)"
	}
	return s + ": " + strings.Join(against, ", ") + " (this rate, not the creates/s above, is the one compared)"
}

// secretLines report when the phase's pods got their Secrets, as this
// tool's watch saw them; openLoop adds the grace deadline's count.
func secretLines(o secretOutcome, openLoop bool) []string {
	var out []string
	if o.withSecret > 0 {
		s := fmt.Sprintf("create returned → bootstrap Secret seen (this tool's watch): p50 %.2f ms  p99 %.2f ms  max %.2f ms over %d",
			ms(pct(o.delays, 50)), ms(pct(o.delays, 99)), ms(maxOf(o.delays)), o.withSecret)
		if o.before > 0 {
			s += fmt.Sprintf("; %d already there when their create returned (0 ms)", o.before)
		}
		out = append(out, s)
	}
	var miss []string
	if openLoop {
		miss = append(miss, fmt.Sprintf("%d without their Secret %s after the phase ended (must be 0)", o.missingAtGrace, secretGrace))
	}
	miss = append(miss, fmt.Sprintf("%d never seen (waited while new ones kept appearing, until none for %s)", o.never(), secretQuiet))
	if o.unlabelled > 0 {
		miss = append(miss, fmt.Sprintf("%d created pods came back without a proxy uuid (not injected)", o.unlabelled))
	}
	return append(out, fmt.Sprintf("bootstrap Secrets of %d created pods: %s", o.pods, strings.Join(miss, "; ")))
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// writtenText is serve's bootstrap Secret writes between two scrapes of its
// counter by writer: the three writers serve has, in order, then any other.
func writtenText(before, after map[string]float64) string {
	writers := []string{string(injector.SecretWriterAdmission), string(injector.SecretWriterController), "repair"}
	var others []string
	for w := range after {
		if !slices.Contains(writers, w) {
			others = append(others, w)
		}
	}
	slices.Sort(others)
	parts := make([]string, 0, len(writers)+len(others))
	for _, w := range append(writers, others...) {
		parts = append(parts, fmt.Sprintf("%s %.0f", w, after[w]-before[w]))
	}
	return strings.Join(parts, ", ")
}
