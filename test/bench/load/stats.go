package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// call is one create: when it started (from the phase's start), how long it
// took and how it failed.
type call struct {
	at, took time.Duration
	err      error
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

// scrapeHistogram sums, over every series of family name whose labels
// include match, the cumulative buckets. ok is false when the family is not
// exported at all.
func scrapeHistogram(r io.Reader, name string, match map[string]string) (h histogram, ok bool, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return h, false, fmt.Errorf("parsing metrics: %w", err)
	}
	fam, ok := families[name]
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
