package main

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
	if c.inProcess || c.alg != certs.DefaultKeyAlgorithm || len(c.serveArgs) != 0 || !slices.Equal(c.phases, []string{nsPlain, nsSecret, nsMeshed}) ||
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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-key-algorithm=dsa"}, "-key-algorithm"},
		{[]string{"-pods=0"}, "must be positive"},
		{[]string{"-cert-key-bit-size=-1"}, "must not be negative"},
		{[]string{"-phases=plain,plain"}, "at most once"},
		{[]string{"-phases=meshy"}, "at most once"},
		{[]string{"-in-process", "-serve-args=--key-pool-size=1"}, "-in-process runs no serve"},
		{[]string{"-profile=x.pprof"}, "only holds the injector with -in-process"},
		{[]string{"now"}, "unexpected arguments"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
