package main

import (
	"bytes"
	"errors"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

func TestPct(t *testing.T) {
	d := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{"none", nil, 99, 0},
		{"one", d(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 51 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 100 * time.Millisecond},
		{"p100 stays in range", d(1, 2, 3), 100, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := pct(tc.in, tc.p); got != tc.want {
				t.Errorf("pct(%d) = %v, want %v", tc.p, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Error("pct reordered its input")
			}
		})
	}
}

func TestWindows(t *testing.T) {
	fail := errors.New("refused")
	calls := []call{
		{at: 0, took: 10 * time.Millisecond},
		{at: 29 * time.Second, took: 30 * time.Millisecond, err: fail},
		{at: 30 * time.Second, took: 5 * time.Millisecond},
		// nothing started in 60-90 s
		{at: 95 * time.Second, took: 7 * time.Millisecond},
	}
	got := windows(calls, 30*time.Second)
	want := []window{
		{from: 0, n: 2, errs: 1, p50: 30 * time.Millisecond, p99: 30 * time.Millisecond},
		{from: 30 * time.Second, n: 1, p50: 5 * time.Millisecond, p99: 5 * time.Millisecond},
		{from: 60 * time.Second},
		{from: 90 * time.Second, n: 1, p50: 7 * time.Millisecond, p99: 7 * time.Millisecond},
	}
	if !slices.Equal(got, want) {
		t.Errorf("windows\n got %+v\nwant %+v", got, want)
	}
	if windows(nil, time.Second) != nil || windows(calls, 0) != nil {
		t.Error("no calls or no width must give no windows")
	}
}

func TestErrorSummary(t *testing.T) {
	refused := func(pod, uuid, d string) error {
		return errors.New(`admission webhook "fsm-inject.k8s.io" denied the request: creating Secret meshed/sidecar-bootstrap-config-` + uuid +
			` for pod ` + pod + `: client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline after ` + d)
	}
	calls := []call{
		{err: refused("p-1", "0f6e7d2a-1b3c-4d5e-8f90-a1b2c3d4e5f6", "1.5s")},
		{err: refused("p-22", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "300ms")},
		{err: errors.New("etcdserver: request timed out")},
		{},
		{err: refused("p-333", "11111111-2222-3333-4444-555555555555", "2s")},
	}
	got := errorSummary(calls, 3)
	if len(got) != 2 {
		t.Fatalf("got %d groups, want 2: %q", len(got), got)
	}
	if !strings.HasPrefix(got[0], "3× ") || !strings.Contains(got[0], `"fsm-inject.k8s.io" denied`) || !strings.Contains(got[0], "client rate limiter Wait") ||
		strings.Contains(got[0], "p-1") || strings.Contains(got[0], "0f6e7d2a") || strings.Contains(got[0], "1.5s") {
		t.Errorf("first group %q: want the 3 rate-limiter refusals, pod names, uuids and durations masked", got[0])
	}
	if got[1] != "1× etcdserver: request timed out" {
		t.Errorf("second group %q", got[1])
	}
	if got := errorSummary(calls, 1); len(got) != 1 || !strings.HasPrefix(got[0], "3× ") {
		t.Errorf("top 1: %q, want the rate-limiter group only", got)
	}
	if got := errorSummary(calls[3:4], 3); len(got) != 0 {
		t.Errorf("no errors: %q, want none", got)
	}
}

func TestServeArgs(t *testing.T) {
	ports := servePorts{injector: 1, validator: 2, converter: 3, metrics: 4, health: 5}
	placement := []string{"serve", "--kubeconfig=/k", "--webhook-url-host=127.0.0.1", "--webhook-bind-host=127.0.0.1",
		"--injector-port=1", "--validator-port=2", "--converter-port=3",
		"--metrics-bind-address=127.0.0.1:4", "--health-probe-bind-address=127.0.0.1:5"}
	for _, tc := range []struct {
		name       string
		alg        certs.KeyAlgorithm
		extra      []string
		nonDefault []string
	}{
		{"shipped", certs.DefaultKeyAlgorithm, nil, nil},
		{"ecdsa", certs.ECDSAP256, nil, []string{"--ca-key-algorithm=ecdsa-p256"}},
		{"rsa4096 and a pre-filled pool", certs.RSA4096, []string{"--key-pool-size=2064"}, []string{"--ca-key-algorithm=rsa4096", "--key-pool-size=2064"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, nonDefault := serveArgs("/k", ports, tc.alg, tc.extra)
			if !slices.Equal(nonDefault, tc.nonDefault) {
				t.Errorf("non-default %q, want %q", nonDefault, tc.nonDefault)
			}
			if want := append(slices.Clone(placement), tc.nonDefault...); !slices.Equal(args, want) {
				t.Errorf("args\n got %q\nwant %q", args, want)
			}
		})
	}
}

func TestServeKeyAlgorithmIsServes(t *testing.T) {
	// serve's --ca-key-algorithm values (cmd/fsm-webhooks options.go).
	want := map[certs.KeyAlgorithm]string{certs.RSA2048: "rsa2048", certs.RSA3072: "rsa3072", certs.RSA4096: "rsa4096",
		certs.ECDSAP256: "ecdsa-p256", certs.ECDSAP384: "ecdsa-p384"}
	for _, a := range certs.KeyAlgorithms {
		if got := serveKeyAlgorithm(a); got != want[a] {
			t.Errorf("%s: %q, want %q", a, got, want[a])
		}
	}
}

func TestProcCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    string
	}{
		{"plain", "4242 (fsm-webhooks) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 75 0 0 20 0 12 0 100 0 0", 3250 * time.Millisecond, ""},
		{"command with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, ""},
		{"no command", "4242 fsm S 1", 0, "no ')'"},
		{"truncated", "4242 (fsm) S 1 2 3", 0, "fields after the command name"},
		{"not a number", "4242 (fsm) S 1 4242 4242 0 -1 4194560 3000 0 0 0 x 75 0", 0, `CPU ticks "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := procCPU(tc.stat)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("procCPU = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestProcThreadsSchedstat reads this test's own threads: the CPU time they
// ran grows while it spins (however loaded the machine, within a minute).
func TestProcThreadsSchedstat(t *testing.T) {
	before, _, err := procThreadsSchedstat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		for spin := time.Now().Add(5 * time.Millisecond); time.Now().Before(spin); { // CPU time, not sleep
		}
		after, _, err := procThreadsSchedstat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 20*time.Millisecond {
			return
		}
	}
	t.Fatal("threads' run time did not grow by 20 ms in a minute of spinning")
}

func TestProcStatusKiB(t *testing.T) {
	status := "Name:\tfsm-webhooks\nVmHWM:\t   61440 kB\nVmRSS:\t   40960 kB\nThreads:\t12\n"
	for _, tc := range []struct {
		name, field string
		want        int64
		wantErr     bool
	}{
		{"rss", "VmRSS", 40960, false},
		{"peak", "VmHWM", 61440, false},
		{"absent", "VmSwap", 0, true},
		{"not kB", "Threads", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := procStatusKiB(status, tc.field)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("procStatusKiB(%s) = %d, %v; want %d, error %v", tc.field, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// metricsText is serve's histogram as Prometheus text, two result series of
// the injector and one of the validator (which must not count).
func metricsText(patched, errored [4]int) string {
	series := func(webhook, result string, c [4]int) string {
		return `fsm_webhooks_request_duration_seconds_bucket{result="` + result + `",webhook="` + webhook + `",le="0.001"} ` + strconv.Itoa(c[0]) + "\n" +
			`fsm_webhooks_request_duration_seconds_bucket{result="` + result + `",webhook="` + webhook + `",le="0.01"} ` + strconv.Itoa(c[1]) + "\n" +
			`fsm_webhooks_request_duration_seconds_bucket{result="` + result + `",webhook="` + webhook + `",le="0.1"} ` + strconv.Itoa(c[2]) + "\n" +
			`fsm_webhooks_request_duration_seconds_bucket{result="` + result + `",webhook="` + webhook + `",le="+Inf"} ` + strconv.Itoa(c[3]) + "\n" +
			`fsm_webhooks_request_duration_seconds_sum{result="` + result + `",webhook="` + webhook + `"} 1` + "\n" +
			`fsm_webhooks_request_duration_seconds_count{result="` + result + `",webhook="` + webhook + `"} ` + strconv.Itoa(c[3]) + "\n"
	}
	return "# TYPE fsm_webhooks_request_duration_seconds histogram\n" +
		series("injector", "patched", patched) + series("injector", "error", errored) + series("validator", "allowed", [4]int{1000, 1000, 1000, 1000})
}

func TestHistogramQuantile(t *testing.T) {
	before, ok, err := scrapeHistogram(strings.NewReader(metricsText([4]int{1, 1, 1, 1}, [4]int{0, 0, 0, 0})), "fsm_webhooks_request_duration_seconds", map[string]string{"webhook": "injector"})
	if err != nil || !ok {
		t.Fatalf("scrape: ok %v, %v", ok, err)
	}
	// Over the phase: 5 patched (2 ≤ 1 ms, 3 in 1-10 ms), 1 error in +Inf.
	after, _, err := scrapeHistogram(strings.NewReader(metricsText([4]int{3, 6, 6, 6}, [4]int{0, 0, 0, 1})), "fsm_webhooks_request_duration_seconds", map[string]string{"webhook": "injector"})
	if err != nil {
		t.Fatal(err)
	}
	h := after.since(before)
	if h.total() != 6 {
		t.Fatalf("total %d, want 6 (the validator's 1000 must not count)", h.total())
	}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.25, 0.00075}, // rank 1.5 of 2 in (0, 1 ms]
		{0.5, 0.004},    // rank 3: 1 of 3 in (1, 10] ms
		{0.99, 0.1},     // in +Inf: the highest finite bound
	} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("quantile(%g) = %g, want %g", tc.q, got, tc.want)
		}
	}
	if (histogram{}).quantile(.99) != 0 {
		t.Error("an empty histogram's quantile must be 0")
	}
	_, ok, err = scrapeHistogram(strings.NewReader("# TYPE other counter\nother 1\n"), "fsm_webhooks_request_duration_seconds", nil)
	if ok || err != nil {
		t.Errorf("absent family: ok %v, err %v; want not ok, no error", ok, err)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.inProcess || c.alg != certs.DefaultKeyAlgorithm || len(c.serveArgs) != 0 || !slices.Equal(c.phases, []string{nsPlain, nsSecret, nsNoop, nsSized, nsMeshed}) ||
		c.meshedPods != c.pods || c.certKeyBits != 2048 {
		t.Errorf("defaults %+v: want serve with its own key algorithm, no extra args, all phases, as many meshed pods as the others, the chart's certKeyBitSize", c)
	}
	c, err = parseFlags([]string{"-phases=meshed", "-key-algorithm=ecdsa-p256", "-serve-args=--key-pool-size=64  --kube-api-qps=5", "-meshed-pods=30", "-cert-key-bit-size=0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.alg != certs.ECDSAP256 || !slices.Equal(c.phases, []string{nsMeshed}) || !slices.Equal(c.serveArgs, []string{"--key-pool-size=64", "--kube-api-qps=5"}) ||
		c.meshedPods != 30 || c.certKeyBits != 0 {
		t.Errorf("parsed %+v", c)
	}
	c, err = parseFlags([]string{"-mode=memory", "-soak=10m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.rate != 200 || c.duration != 10*time.Minute || !c.churn || c.pods != 120000 || c.prefill != 5000 {
		t.Errorf("memory soak: %+v, want 200/s for 10 min (120000 pods) with churn over 5000 pre-filled", c)
	}
	c, err = parseFlags([]string{"-mode=memory"})
	if err != nil || c.duration != time.Minute || c.churn || c.pods != 12000 {
		t.Errorf("memory: %+v, %v; want 60 s at 200/s without churn", c, err)
	}
	c, err = parseFlags([]string{"-phases=meshed", "-rate=4", "-duration=10m"})
	if err != nil || c.pods != 2400 || c.meshedPods != 2400 {
		t.Errorf("steady state: %+v, %v; want 2400 pods", c, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-mode=soak"}, "-mode"},
		{[]string{"-soak=1m"}, "only with -mode memory"},
		{[]string{"-duration=1m"}, "needs -rate"},
		{[]string{"-mode=startup", "-in-process"}, "-in-process runs none"},
		{[]string{"-key-algorithm=dsa"}, "-key-algorithm"},
		{[]string{"-pods=0"}, "must be positive"},
		{[]string{"-cert-key-bit-size=-1"}, "must not be negative"},
		{[]string{"-phases=plain,plain"}, "at most once"},
		{[]string{"-phases=meshy"}, "at most once"},
		{[]string{"-in-process", "-serve-args=--key-pool-size=1"}, "-in-process runs no serve"},
		{[]string{"-serve-args=--bootstrap-secret-writer=kubelet"}, `--bootstrap-secret-writer "kubelet"`},
		{[]string{"-profile=x.pprof"}, "only holds the injector with -in-process"},
		{[]string{"now"}, "unexpected arguments"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestGrowth(t *testing.T) {
	series := func(n int, f func(i int) float64) []point {
		ps := make([]point, n)
		for i := range ps {
			ps[i] = point{at: time.Duration(i) * time.Second, v: f(i)}
		}
		return ps
	}
	for _, tc := range []struct {
		name      string
		ps        []point
		wantHalf  float64
		wantGrows bool
	}{
		{"flat", series(600, func(int) float64 { return 50 }), 0, false},
		// A GC sawtooth between 48 and 52 MiB: no trend.
		{"sawtooth", series(600, func(i int) float64 { return 48 + float64(i%20)/5 }), 0.265, false},
		// Warm-up growth in the first half only is not growth.
		{"grows then settles", series(600, func(i int) float64 { return 30 + min(float64(i), 200)/10 }), 0, false},
		// 10 MiB per 10 minutes: 5 MiB over the second half (299 s).
		{"leak", series(600, func(i int) float64 { return 50 + float64(i)/60 }), 299.0 / 60, true},
		// 0.5 MiB over the half: below 1 MiB.
		{"tiny slope", series(600, func(i int) float64 { return 50 + float64(i)/600 }), 299.0 / 600, false},
		{"too short", series(3, func(i int) float64 { return float64(i) * 100 }), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			half, grows := growth(tc.ps)
			if math.Abs(half-tc.wantHalf) > 0.05 || grows != tc.wantGrows {
				t.Errorf("growth = %.3f MiB, grows %v; want %.3f, %v", half, grows, tc.wantHalf, tc.wantGrows)
			}
		})
	}
}

func TestSpans(t *testing.T) {
	ps := []point{{0, 10}, {10 * time.Second, 30}, {29 * time.Second, 20}, {30 * time.Second, 25}, {95 * time.Second, 5}}
	want := []span{
		{from: 0, n: 3, min: 10, max: 30, last: 20},
		{from: 30 * time.Second, n: 1, min: 25, max: 25, last: 25},
		{from: 90 * time.Second, n: 1, min: 5, max: 5, last: 5},
	}
	if got := spans(ps, 30*time.Second); !slices.Equal(got, want) {
		t.Errorf("spans\n got %+v\nwant %+v", got, want)
	}
}

func TestDryIntervals(t *testing.T) {
	s := time.Second
	ats := []time.Duration{0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s}
	// Misses rise in (1,2], (2,3], (3,4] and (5,6].
	misses := []float64{0, 0, 5, 9, 10, 10, 12}
	dry, sustained := dryIntervals(ats, misses)
	wantDry := []interval{{s, 2 * s}, {2 * s, 3 * s}, {3 * s, 4 * s}, {5 * s, 6 * s}}
	wantSustained := []interval{{2 * s, 3 * s}, {3 * s, 4 * s}}
	if !slices.Equal(dry, wantDry) || !slices.Equal(sustained, wantSustained) {
		t.Errorf("dry %v sustained %v; want %v, %v", dry, sustained, wantDry, wantSustained)
	}
	calls := []call{{at: 500 * time.Millisecond}, {at: s}, {at: 2500 * time.Millisecond}, {at: 4 * s}, {at: 5900 * time.Millisecond}}
	got := callsWithin(calls, sustained)
	if len(got) != 1 || got[0].at != 2500*time.Millisecond {
		t.Errorf("calls within sustained dry intervals: %+v, want the one at 2.5 s", got)
	}
	if got := callsWithin(calls, dry); len(got) != 3 {
		t.Errorf("calls within dry intervals: %+v, want those at 1, 2.5 and 5.9 s", got)
	}
}

// apiserverMetrics is a kube-apiserver apiserver_request_total excerpt.
func apiserverMetrics(podCreates, secretPatches, leaseUpdates int) string {
	line := func(verb, resource, sub, code, dryRun string, v int) string {
		return `apiserver_request_total{code="` + code + `",component="apiserver",dry_run="` + dryRun + `",group="",resource="` + resource +
			`",scope="resource",subresource="` + sub + `",verb="` + verb + `",version="v1"} ` + strconv.Itoa(v) + "\n"
	}
	return "# TYPE apiserver_request_total counter\n" +
		line("POST", "pods", "", "201", "", podCreates) +
		line("POST", "pods", "", "201", "All", 1000) + // dry runs write nothing
		line("GET", "pods", "", "200", "", 5000) + // reads are not writes
		line("PATCH", "secrets", "", "200", "", secretPatches) +
		line("PATCH", "secrets", "", "409", "", secretPatches/100) + // a conflict is still a request
		line("PUT", "leases", "", "200", "", leaseUpdates) +
		line("PUT", "pods", "status", "200", "", 0)
}

func TestWritesPerPod(t *testing.T) {
	parse := func(s string) map[writeKey]float64 {
		fams, err := parseMetrics(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return fams.apiserverWrites()
	}
	idle := diffWrites(parse(apiserverMetrics(0, 0, 10)), parse(apiserverMetrics(0, 0, 12))) // 2 lease updates in 10 s
	if want := map[writeKey]float64{{"leases", "update"}: 2}; len(idle) != 1 || idle[writeKey{"leases", "update"}] != 2 {
		t.Fatalf("idle writes %v, want %v", idle, want)
	}
	// 100 pods over 50 s: 100 creates, 101 patches (one a conflict), 40 lease updates (10 background).
	rows := writesPerPod(parse(apiserverMetrics(1, 0, 12)), parse(apiserverMetrics(101, 100, 52)), idle, 10*time.Second, 50*time.Second, 100)
	got := map[writeKey]float64{}
	var order []writeKey
	for _, r := range rows {
		got[r.key] = r.perPod
		order = append(order, r.key)
	}
	want := map[writeKey]float64{
		{"pods", "create"}: 1, {"pods", "delete"}: 0, {"secrets", "create"}: 0, {"secrets", "delete"}: 0,
		{"secrets", "patch"}: 1.01, {"secrets", "update"}: 0, {"leases", "update"}: 0.3,
	}
	for k, w := range want {
		if math.Abs(got[k]-w) > 1e-9 {
			t.Errorf("%v: %.3f per pod, want %.3f", k, got[k], w)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("rows %v: want the six always shown and the lease updates (pod status writes none)", order)
	}
	if !slices.Equal(order[:len(alwaysShown)], alwaysShown) {
		t.Errorf("order %v: the always-shown rows come first", order)
	}
}

func TestFlagValue(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		want   string
		wantOK bool
	}{
		{nil, "", false},
		{[]string{"--bootstrap-key-algorithm=rsa2048"}, "rsa2048", true},
		{[]string{"-bootstrap-key-algorithm", "meshconfig"}, "meshconfig", true},
		{[]string{"--bootstrap-key-algorithm=rsa2048", "--bootstrap-key-algorithm=ecdsa-p384"}, "ecdsa-p384", true},
		{[]string{"--bootstrap-key-algorithm-x=1"}, "", false},
		{[]string{"--bootstrap-key-algorithm"}, "", false},
	} {
		got, ok := flagValue(tc.args, "bootstrap-key-algorithm")
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("flagValue(%q) = %q, %v; want %q, %v", tc.args, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestBootstrapKeys(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inProcess bool
		args      []string
		bits      int
		ca        certs.KeyAlgorithm
		want      string
	}{
		// The banner once said RSA-2048 here: serve's default ignores certKeyBitSize.
		{"serve's default, chart MeshConfig, RSA CA", false, nil, 2048, certs.RSA2048, "bootstrap keys ECDSAP256 (--bootstrap-key-algorithm=ecdsa-p256, serve's default)"},
		{"FSM's choice", false, []string{"--bootstrap-key-algorithm=meshconfig"}, 2048, certs.ECDSAP256, "bootstrap keys RSA2048 (--bootstrap-key-algorithm=meshconfig, MeshConfig certKeyBitSize 2048)"},
		{"FSM's choice without certKeyBitSize", false, []string{"--bootstrap-key-algorithm=meshconfig"}, 0, certs.ECDSAP384, "bootstrap keys ECDSAP384 (--bootstrap-key-algorithm=meshconfig, MeshConfig certKeyBitSize unset: the CA's algorithm)"},
		{"named", false, []string{"--bootstrap-key-algorithm", "rsa3072"}, 2048, certs.RSA2048, "bootstrap keys RSA3072 (--bootstrap-key-algorithm=rsa3072)"},
		{"in-process", true, nil, 2048, certs.RSA2048, "bootstrap keys ECDSAP256 (the injector's default)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bootstrapKeys(tc.inProcess, tc.args, tc.bits, tc.ca)
			if err != nil || got != tc.want {
				t.Errorf("bootstrapKeys = %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
	if _, err := bootstrapKeys(false, []string{"--bootstrap-key-algorithm=dsa"}, 2048, certs.RSA2048); err == nil || !strings.Contains(err.Error(), `"dsa"`) {
		t.Errorf("bad --bootstrap-key-algorithm: %v, want an error naming the value", err)
	}
}

func TestRegime(t *testing.T) {
	for _, tc := range []struct {
		inProcess  bool
		nonDefault []string
		want       string
	}{
		{false, nil, "shipped settings"},
		{false, []string{"--ca-key-algorithm=ecdsa-p256"}, "NON-DEFAULT: --ca-key-algorithm=ecdsa-p256"},
		{false, []string{"--key-pool-size=2064"}, "BURST-sized key pool, NON-DEFAULT: --key-pool-size=2064"},
		{true, nil, "BURST: in-process handler, pre-filled key pool, NOT what ships"},
	} {
		if got := regime(tc.inProcess, tc.nonDefault); got != tc.want {
			t.Errorf("regime(%v, %q) = %q, want %q", tc.inProcess, tc.nonDefault, got, tc.want)
		}
	}
}

func TestHistogramPlus(t *testing.T) {
	a := histogram{bounds: []float64{.001, math.Inf(1)}, counts: []uint64{1, 2}}
	b := histogram{bounds: []float64{.001, math.Inf(1)}, counts: []uint64{3, 3}}
	if got := (histogram{}).plus(a).plus(b); !slices.Equal(got.counts, []uint64{4, 5}) || got.total() != 5 {
		t.Errorf("plus: %+v, want counts [4 5]", got)
	}
	if !slices.Equal(a.counts, []uint64{1, 2}) {
		t.Error("plus modified its receiver")
	}
}

func TestPodNamespace(t *testing.T) {
	var got []string
	for i := range 5 {
		got = append(got, podNamespace("meshed", i, 3))
	}
	if want := []string{"meshed", "meshed-1", "meshed-2", "meshed", "meshed-1"}; !slices.Equal(got, want) {
		t.Errorf("spread over 3: %q, want %q", got, want)
	}
	if got := podNamespace("plain", 7, 1); got != "plain" {
		t.Errorf("spread over 1: %q, want plain", got)
	}
	if got, want := namespacesOf(2, "plain", "meshed"), []string{"plain", "plain-1", "meshed", "meshed-1"}; !slices.Equal(got, want) {
		t.Errorf("namespacesOf: %q, want %q", got, want)
	}
}

// TestSchedLatenciesAsServeExportsThem reads the Go scheduler's latency
// histogram from controller-runtime's registry, the one serve's /metrics
// serves, and reports it with the threads' run-queue time.
func TestSchedLatenciesAsServeExportsThem(t *testing.T) {
	scrape := func() usage {
		t.Helper()
		var b bytes.Buffer
		got, err := metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range got {
			if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
		fams, err := parseMetrics(&b)
		if err != nil {
			t.Fatal(err)
		}
		u := usage{}
		if u.sched, u.hasSched, err = fams.histogramOf("go_sched_latencies_seconds", nil); err != nil || !u.hasSched {
			t.Fatalf("go_sched_latencies_seconds: exported %v, %v", u.hasSched, err)
		}
		return u
	}
	first := scrape()
	var wg sync.WaitGroup
	// The runtime times one goroutine in eight, chosen at random: 1000
	// started give 125 on average, far above 50.
	for range 1000 {
		wg.Go(func() {})
	}
	wg.Wait()
	last := scrape()
	first.ran, first.waited = time.Second, 100*time.Millisecond
	last.ran, last.waited = 3*time.Second, 600*time.Millisecond
	lines := starvationReport(first, last)
	if len(lines) != 2 {
		t.Fatalf("starvationReport = %q, want two lines", lines)
	}
	if want := "ran 2.0 s and waited 0.5 s more on the kernel's run queue for a CPU (0.25 s waited per s run"; !strings.Contains(lines[0], want) {
		t.Errorf("run-queue line %q, want it to contain %q", lines[0], want)
	}
	if n := last.sched.since(first.sched).total(); n < 50 {
		t.Errorf("%d scheduling latencies recorded over 1000 goroutines started, want at least 50", n)
	}
	if !strings.Contains(lines[1], "go_sched_latencies_seconds") {
		t.Errorf("scheduler line %q does not name its metric", lines[1])
	}
}
