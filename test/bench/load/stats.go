package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// call is one create: when it started (from the phase's start), how long it
// took, how late it started and how it failed.
type call struct {
	at, took time.Duration
	// late is how far behind its schedule an open-loop create started.
	late time.Duration
	err  error
	// uuid is the proxy uuid the injector gave a created meshed pod, the
	// label its bootstrap Secret carries ("" when not injected).
	uuid string
}

func latencies(calls []call) []time.Duration {
	out := make([]time.Duration, len(calls))
	for i, c := range calls {
		out[i] = c.took
	}
	return out
}

// pct is the p-th percentile (nearest rank, rounded down), 0 for none.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// window is the calls started within [from, from+width).
type window struct {
	from     time.Duration
	n, errs  int
	p50, p99 time.Duration
}

// windows cuts a phase into consecutive windows by start time, so a burst
// at the start (a key pool draining) shows apart from the steady state.
func windows(calls []call, width time.Duration) []window {
	if width <= 0 || len(calls) == 0 {
		return nil
	}
	byStart := map[int][]call{}
	last := 0
	for _, c := range calls {
		i := int(c.at / width)
		byStart[i] = append(byStart[i], c)
		last = max(last, i)
	}
	out := make([]window, 0, last+1)
	for i := 0; i <= last; i++ {
		w := window{from: time.Duration(i) * width, n: len(byStart[i])}
		for _, c := range byStart[i] {
			if c.err != nil {
				w.errs++
			}
		}
		lat := latencies(byStart[i])
		w.p50, w.p99 = pct(lat, 50), pct(lat, 99)
		out = append(out, w)
	}
	return out
}

// varying are the parts of an error message that differ between pods.
var varying = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[ps]-[0-9]+\b|\b[0-9]+(\.[0-9]+)?(ns|µs|ms|s)\b`)

// errorSummary groups failed calls by their message (pod names, uuids and
// durations masked) and returns the top n, most frequent first, as
// "count× message".
func errorSummary(calls []call, n int) []string {
	counts := map[string]int{}
	for _, c := range calls {
		if c.err != nil {
			counts[varying.ReplaceAllString(c.err.Error(), "…")]++
		}
	}
	msgs := make([]string, 0, len(counts))
	for m := range counts {
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b string) int { return cmp.Or(counts[b]-counts[a], strings.Compare(a, b)) })
	out := make([]string, 0, min(n, len(msgs)))
	for _, m := range msgs[:min(n, len(msgs))] {
		out = append(out, fmt.Sprintf("%d× %s", counts[m], m))
	}
	return out
}

// serveKeyAlgorithm is serve's --ca-key-algorithm spelling of a (rsa2048,
// ecdsa-p256).
func serveKeyAlgorithm(a certs.KeyAlgorithm) string {
	if rest, ok := strings.CutPrefix(string(a), "ECDSAP"); ok {
		return "ecdsa-p" + rest
	}
	return strings.ToLower(string(a))
}

// servePorts are where serve listens: all on loopback, on free ports, since
// the machine is shared.
type servePorts struct {
	injector, validator, converter, metrics, health int
}

// serveArgs is serve's command line: the placement every out-of-cluster run
// needs (kubeconfig, URL registration, loopback ports), then the settings
// that change what is measured, which are also returned to be printed next
// to every figure. The default key algorithm is not passed, so a run without
// extra arguments is the shipped configuration.
func serveArgs(kubeconfig string, p servePorts, alg certs.KeyAlgorithm, extra []string) (args, nonDefault []string) {
	args = []string{
		"serve",
		"--kubeconfig=" + kubeconfig,
		"--webhook-url-host=127.0.0.1",
		"--webhook-bind-host=127.0.0.1",
		"--injector-port=" + strconv.Itoa(p.injector),
		"--validator-port=" + strconv.Itoa(p.validator),
		"--converter-port=" + strconv.Itoa(p.converter),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", p.metrics),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", p.health),
	}
	if alg != certs.DefaultKeyAlgorithm {
		nonDefault = append(nonDefault, "--ca-key-algorithm="+serveKeyAlgorithm(alg))
	}
	nonDefault = append(nonDefault, extra...)
	return append(args, nonDefault...), nonDefault
}

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
// Fields 14 and 15 count USER_HZ ticks, 100 per second on Linux.
func procCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no ')' after the command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: CPU ticks %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// procThreadsSchedstat sums, over the threads of process pid alive now, the
// time each ran on a CPU and the time it waited, runnable, on the kernel's
// run queue for one (/proc/<pid>/task/<tid>/schedstat). A Go process keeps
// its threads, so one that exited between two samples is rare; one that
// exits while being read is skipped.
func procThreadsSchedstat(pid int) (ran, waited time.Duration, err error) {
	threads, err := procfs.AllThreads(pid)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range threads {
		st, err := t.Schedstat()
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("thread %d: %w", t.PID, err)
		}
		ran += time.Duration(st.RunningNanoseconds)
		waited += time.Duration(st.WaitingNanoseconds)
	}
	return ran, waited, nil
}

// procStatusKiB is a "Name:  123 kB" line of /proc/<pid>/status (VmRSS,
// VmHWM) in KiB.
func procStatusKiB(status, name string) (int64, error) {
	for line := range strings.Lines(status) {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status %s: %q is not \"<n> kB\"", name, strings.TrimSpace(v))
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc status: no %s line", name)
}

// histogram is one label set's cumulative bucket counts: counts[i] requests
// took at most bounds[i] seconds (the last bound is +Inf).
type histogram struct {
	bounds []float64
	counts []uint64
}

// families is one scrape of a Prometheus text endpoint, by family name.
type families map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// scrapeHistogram parses r and returns histogramOf name.
func scrapeHistogram(r io.Reader, name string, match map[string]string) (h histogram, ok bool, err error) {
	fams, err := parseMetrics(r)
	if err != nil {
		return h, false, err
	}
	return fams.histogramOf(name, match)
}

// sum adds up the values of every counter or gauge series of family name
// (all label sets: e.g. every key pool algorithm). ok is false when the
// family is not exported.
func (fams families) sum(name string) (v float64, ok bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v, true
}

// byLabel is the counter values of family name by the value of label (other
// labels summed). ok is false when the family is not exported.
func (fams families) byLabel(name, label string) (v map[string]float64, ok bool) {
	fam, ok := fams[name]
	if !ok {
		return nil, false
	}
	v = map[string]float64{}
	for _, m := range fam.GetMetric() {
		var key string
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		v[key] += m.GetCounter().GetValue()
	}
	return v, true
}

// histogramOf sums, over every series of family name whose labels include
// match, the cumulative buckets. ok is false when the family is not exported
// at all.
func (fams families) histogramOf(name string, match map[string]string) (h histogram, ok bool, err error) {
	fam, ok := fams[name]
	if !ok {
		return h, false, nil
	}
	for _, m := range fam.GetMetric() {
		if !labelsMatch(m.GetLabel(), match) || m.GetHistogram() == nil {
			continue
		}
		b := m.GetHistogram().GetBucket()
		if h.bounds == nil {
			for _, x := range b {
				h.bounds = append(h.bounds, x.GetUpperBound())
			}
			h.bounds = append(h.bounds, math.Inf(1))
			h.counts = make([]uint64, len(h.bounds))
		}
		if len(b)+1 != len(h.bounds) {
			return h, true, fmt.Errorf("%s: series with %d buckets, others %d", name, len(b), len(h.bounds)-1)
		}
		for i, x := range b {
			h.counts[i] += x.GetCumulativeCount()
		}
		h.counts[len(b)] += m.GetHistogram().GetSampleCount()
	}
	return h, true, nil
}

func labelsMatch(labels []*dto.LabelPair, match map[string]string) bool {
	n := 0
	for _, l := range labels {
		if v, ok := match[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(match)
}

// since is h minus an earlier scrape of the same histogram: the requests of
// one phase.
func (h histogram) since(before histogram) histogram {
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts)}
	if len(before.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= before.counts[i]
		}
	}
	return out
}

// plus is h and o added bucket by bucket (o may be empty): the requests of
// several disjoint intervals.
func (h histogram) plus(o histogram) histogram {
	if len(h.counts) == 0 {
		return histogram{bounds: o.bounds, counts: slices.Clone(o.counts)}
	}
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts)}
	if len(o.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] += o.counts[i]
		}
	}
	return out
}

func (h histogram) total() uint64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile interpolates linearly within the bucket holding the q-th request,
// as Prometheus' histogram_quantile does; a quantile in the +Inf bucket is
// reported as the highest finite bound (a lower bound of the truth). 0 for
// an empty histogram.
func (h histogram) quantile(q float64) float64 {
	total := h.total()
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	for i, c := range h.counts {
		if float64(c) < rank {
			continue
		}
		if math.IsInf(h.bounds[i], 1) {
			return h.bounds[max(0, i-1)]
		}
		lo, below := 0.0, uint64(0)
		if i > 0 {
			lo, below = h.bounds[i-1], h.counts[i-1]
		}
		in := c - below
		if in == 0 {
			return h.bounds[i]
		}
		return lo + (h.bounds[i]-lo)*(rank-float64(below))/float64(in)
	}
	return h.bounds[len(h.bounds)-1]
}

// point is one sample of a series (serve's RSS in MiB) at a time since the
// phase started.
type point struct {
	at time.Duration
	v  float64
}

// slope is the least-squares slope of ps per second, 0 for fewer than two
// distinct times.
func slope(ps []point) float64 {
	if len(ps) < 2 {
		return 0
	}
	var mx, my float64
	for _, p := range ps {
		mx += p.at.Seconds()
		my += p.v
	}
	n := float64(len(ps))
	mx, my = mx/n, my/n
	var sxy, sxx float64
	for _, p := range ps {
		dx := p.at.Seconds() - mx
		sxy += dx * (p.v - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

// growth judges a memory curve by its second half, after caches and pools
// have reached their working size: the least-squares growth over that half
// (MiB), and whether it is growth rather than the garbage collector's
// sawtooth: more than 1 MiB and more than 2% of the half's mean.
func growth(ps []point) (overHalf float64, grows bool) {
	if len(ps) < 4 {
		return 0, false
	}
	mid := ps[0].at + (ps[len(ps)-1].at-ps[0].at)/2
	i, _ := slices.BinarySearchFunc(ps, mid, func(p point, t time.Duration) int { return cmp.Compare(p.at, t) })
	half := ps[i:]
	if len(half) < 2 {
		return 0, false
	}
	overHalf = slope(half) * (half[len(half)-1].at - half[0].at).Seconds()
	var mean float64
	for _, p := range half {
		mean += p.v
	}
	mean /= float64(len(half))
	return overHalf, overHalf > 1 && overHalf > 0.02*mean
}

// span is the samples of a series taken within [from, from+width).
type span struct {
	from           time.Duration
	n              int
	min, max, last float64
}

// spans cuts a series into consecutive spans of width by sample time (the
// curve a soak prints), skipping empty ones.
func spans(ps []point, width time.Duration) []span {
	var out []span
	for _, p := range ps {
		from := p.at.Truncate(width)
		if len(out) == 0 || out[len(out)-1].from != from {
			out = append(out, span{from: from, min: p.v, max: p.v})
		}
		s := &out[len(out)-1]
		s.n++
		s.min, s.max, s.last = min(s.min, p.v), max(s.max, p.v), p.v
	}
	return out
}

// interval is [from, to) since the phase started.
type interval struct{ from, to time.Duration }

// dryIntervals finds, between consecutive samples of the key pools' miss
// counter (ats ascending), the intervals in which a key was asked of an
// empty pool. sustained are the dry intervals whose previous interval was dry
// too: the pool had been empty for longer than a sampling period, longer than
// a refill of one key takes, when the handler should no longer wait for keys.
func dryIntervals(ats []time.Duration, misses []float64) (dry, sustained []interval) {
	for i := 1; i < len(ats) && i < len(misses); i++ {
		if misses[i] <= misses[i-1] {
			continue
		}
		iv := interval{ats[i-1], ats[i]}
		if len(dry) > 0 && dry[len(dry)-1].to == iv.from {
			sustained = append(sustained, iv)
		}
		dry = append(dry, iv)
	}
	return dry, sustained
}

// callsWithin is the calls that started within one of ivs.
func callsWithin(calls []call, ivs []interval) []call {
	var out []call
	for _, c := range calls {
		for _, iv := range ivs {
			if c.at >= iv.from && c.at < iv.to {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// writeKey is one kind of apiserver write: resource[/subresource] and verb.
type writeKey struct{ resource, verb string }

// writeVerbs are the apiserver_request_total verbs that write, as
// Kubernetes' RBAC spells them.
var writeVerbs = map[string]string{"POST": "create", "PUT": "update", "PATCH": "patch", "APPLY": "apply", "DELETE": "delete", "DELETECOLLECTION": "deletecollection"}

// apiserverWrites counts kube-apiserver's mutating requests by resource and
// verb from its apiserver_request_total (every client, every response code;
// dry runs excluded: they write nothing).
func (fams families) apiserverWrites() map[writeKey]float64 {
	out := map[writeKey]float64{}
	fam, ok := fams["apiserver_request_total"]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		verb, ok := writeVerbs[l["verb"]]
		if !ok || l["dry_run"] != "" {
			continue
		}
		res := l["resource"]
		if l["subresource"] != "" {
			res += "/" + l["subresource"]
		}
		out[writeKey{res, verb}] += m.GetCounter().GetValue()
	}
	return out
}

// writeRow is one kind of write of a phase: per pod, after subtracting the
// background the apiserver sees with no load.
type writeRow struct {
	key               writeKey
	total, background float64
	perPod            float64
}

// alwaysShown are the writes a meshed pod's life may cost, printed even when
// none happened (a 0 is the finding).
var alwaysShown = []writeKey{{"pods", "create"}, {"pods", "delete"}, {"secrets", "create"}, {"secrets", "delete"}, {"secrets", "patch"}, {"secrets", "update"}}

// writesPerPod is the writes between before and after (a phase of length
// took over pods pods) minus the idle rate (idle writes over idleTook)
// scaled to the phase, per pod; rows of alwaysShown first, then every other
// kind that wrote at least once per 100 pods.
func writesPerPod(before, after, idle map[writeKey]float64, idleTook, took time.Duration, pods int) []writeRow {
	row := func(k writeKey) writeRow {
		r := writeRow{key: k, total: after[k] - before[k]}
		if idleTook > 0 {
			r.background = idle[k] * took.Seconds() / idleTook.Seconds()
		}
		r.perPod = max(0, r.total-r.background) / float64(pods)
		return r
	}
	var out []writeRow
	for _, k := range alwaysShown {
		out = append(out, row(k))
	}
	var others []writeRow
	for k := range after {
		if slices.Contains(alwaysShown, k) {
			continue
		}
		if r := row(k); r.perPod >= 0.01 {
			others = append(others, r)
		}
	}
	slices.SortFunc(others, func(a, b writeRow) int {
		return cmp.Or(cmp.Compare(b.perPod, a.perPod), strings.Compare(a.key.resource, b.key.resource), strings.Compare(a.key.verb, b.key.verb))
	})
	return append(out, others...)
}

// diffWrites is after minus before, kind by kind.
func diffWrites(before, after map[writeKey]float64) map[writeKey]float64 {
	out := map[writeKey]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// flagValue is the last value given to a flag in a command line (both
// --name=value and --name value, one or two dashes), and whether it was.
func flagValue(args []string, name string) (string, bool) {
	var v string
	var found bool
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if rest, ok := strings.CutPrefix(a, name+"="); ok {
			v, found = rest, true
		} else if a == name && i+1 < len(args) {
			v, found = args[i+1], true
		}
	}
	return v, found
}

// serveBootstrapDefault is serve's --bootstrap-key-algorithm default
// (cmd/fsm-webhooks options.go).
const serveBootstrapDefault = "ecdsa-p256"

// bootstrapKeys says which key the injector puts in each bootstrap Secret,
// decided by the injector's own rule (injector.BootstrapKeyAlgorithm) from
// serve's --bootstrap-key-algorithm (in extra serve arguments, else its
// default), MeshConfig's certKeyBitSize (0: unset) and the CA's algorithm
// (what an empty choice falls back to). The in-process handler is built
// with no choice, which is the injector's default.
func bootstrapKeys(inProcess bool, serveArgs []string, certKeyBits int, ca certs.KeyAlgorithm) (string, error) {
	flagText := serveBootstrapDefault
	if v, ok := flagValue(serveArgs, "bootstrap-key-algorithm"); ok {
		flagText = v
	}
	var choice certs.KeyAlgorithm
	source := "--bootstrap-key-algorithm=" + flagText
	switch {
	case inProcess:
		source = "the injector's default"
	case flagText == "meshconfig":
		choice = injector.BootstrapKeyFromMeshConfig
	default:
		var err error
		if choice, err = certs.ParseKeyAlgorithm(flagText); err != nil {
			return "", fmt.Errorf("--bootstrap-key-algorithm %q: %w", flagText, err)
		}
	}
	alg, err := injector.BootstrapKeyAlgorithm(choice, certKeyBits)
	if err != nil {
		return "", err
	}
	if alg == "" {
		alg = ca
		source += ", MeshConfig certKeyBitSize unset: the CA's algorithm"
	} else if choice == injector.BootstrapKeyFromMeshConfig {
		source += fmt.Sprintf(", MeshConfig certKeyBitSize %d", certKeyBits)
	}
	if !inProcess && flagText == serveBootstrapDefault {
		source += ", serve's default"
	}
	return fmt.Sprintf("bootstrap keys %s (%s)", alg, source), nil
}

// regime is the tag every figure carries: shipped settings, or the settings
// that differ; a pre-filled or enlarged key pool makes the figures a burst.
func regime(inProcess bool, nonDefault []string) string {
	switch {
	case inProcess:
		return "BURST: in-process handler, pre-filled key pool, NOT what ships"
	case len(nonDefault) == 0:
		return "shipped settings"
	}
	if _, ok := flagValue(nonDefault, "key-pool-size"); ok {
		return "BURST-sized key pool, NON-DEFAULT: " + strings.Join(nonDefault, " ")
	}
	return "NON-DEFAULT: " + strings.Join(nonDefault, " ")
}

// podNamespace is where pod i of a phase goes when its pods are spread over
// spread namespaces: the phase's own namespace, then base-1, base-2, ….
func podNamespace(base string, i, spread int) string {
	if spread <= 1 || i%spread == 0 {
		return base
	}
	return base + "-" + strconv.Itoa(i%spread)
}

// namespacesOf is every namespace of the phases bases spread over spread.
func namespacesOf(spread int, bases ...string) []string {
	var out []string
	for _, b := range bases {
		for i := range max(1, spread) {
			out = append(out, podNamespace(b, i, spread))
		}
	}
	return out
}
