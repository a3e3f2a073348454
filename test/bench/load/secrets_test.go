package main

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

func TestSecretWriter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inProcess bool
		args      []string
		writer    injector.SecretWriter
		text      string
		err       string
	}{
		{name: "serve's default", writer: injector.SecretWriterAdmission, text: "bootstrap Secrets written by the admission (--bootstrap-secret-writer=admission, serve's default)"},
		{name: "controller", args: []string{"--key-pool-size=64", "--bootstrap-secret-writer=controller"}, writer: injector.SecretWriterController,
			text: "bootstrap Secrets written by the controller (--bootstrap-secret-writer=controller)"},
		{name: "admission given", args: []string{"--bootstrap-secret-writer", "admission"}, writer: injector.SecretWriterAdmission,
			text: "bootstrap Secrets written by the admission (--bootstrap-secret-writer=admission)"},
		{name: "the last one wins, as in pflag", args: []string{"--bootstrap-secret-writer=admission", "-bootstrap-secret-writer=controller"}, writer: injector.SecretWriterController,
			text: "bootstrap Secrets written by the controller (--bootstrap-secret-writer=controller)"},
		{name: "in-process", inProcess: true, writer: injector.SecretWriterAdmission, text: "bootstrap Secrets written in the admission (the in-process handler's only writer)"},
		{name: "unknown", args: []string{"--bootstrap-secret-writer=kubelet"}, err: `--bootstrap-secret-writer "kubelet": must be "admission" or "controller"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writer, text, err := secretWriter(tc.inProcess, tc.args)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || writer != tc.writer || text != tc.text {
				t.Errorf("= %q, %q, %v; want %q, %q", writer, text, err, tc.writer, tc.text)
			}
		})
	}
}

func TestMatchSecrets(t *testing.T) {
	start := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	ms := time.Millisecond
	calls := []call{
		// Admission writer: the Secret was stored before the create returned.
		{at: 0, took: 10 * ms, uuid: "a"},
		// Controller writer: 30 ms after the return (at 20 ms).
		{at: 10 * ms, took: 10 * ms, uuid: "b"},
		// Seen after the grace deadline: has a Secret, but late.
		{at: 20 * ms, took: 10 * ms, uuid: "c"},
		// Never seen.
		{at: 30 * ms, took: 10 * ms, uuid: "d"},
		// Not injected: no Secret due.
		{at: 40 * ms, took: 10 * ms},
		// Failed: no pod, not counted (its uuid-less Secret neither).
		{at: 50 * ms, took: 10 * ms, uuid: "e", err: errors.New("timeout")},
	}
	seen := map[string]time.Time{"a": at(5 * ms), "b": at(50 * ms), "c": at(9 * time.Second), "e": at(60 * ms), "other": at(ms)}
	o := matchSecrets(calls, start, seen, at(5*time.Second))
	want := secretOutcome{pods: 5, unlabelled: 1, withSecret: 3, before: 1, delays: []time.Duration{0, 30 * ms, 9*time.Second - 30*ms}, last: 9 * time.Second, lastReturn: 50 * ms, missingAtGrace: 2}
	if !slices.Equal(o.delays, want.delays) {
		t.Errorf("delays %v, want %v", o.delays, want.delays)
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("outcome\n got %+v\nwant %+v", o, want)
	}
	if o.never() != 1 {
		t.Errorf("never %d, want 1 (d)", o.never())
	}

	// With every Secret first, the last pod with its Secret is the last
	// create's return: the rate cannot exceed the creates'.
	o = matchSecrets(calls[:1], start, map[string]time.Time{"a": at(ms)}, at(time.Second))
	if o.last != 10*ms || o.before != 1 || o.missingAtGrace != 0 {
		t.Errorf("admission writer: %+v, want the last at the create's return (10 ms), 1 before, none missing", o)
	}
}

func TestClosedLoopSecrets(t *testing.T) {
	o := secretOutcome{pods: 300, withSecret: 300, last: 2 * time.Second, lastReturn: 1500 * time.Millisecond}
	const head = "pods with their bootstrap Secret: 150.0 pods/s (300, the last with its Secret 2.00 s after the phase started, 0.50 s after the last create returned)"
	const tail = " (this rate, not the creates/s above, is the one compared)"
	for _, tc := range []struct {
		name string
		o    secretOutcome
		b    baselines
		want string
	}{
		{"against every baseline", o, baselines{secret: 200, noop: 160, sized: 150},
			head + ": 75% of the pod + Secret phase's 200.0 pods/s, 94% of the no-op webhook phase's 160.0 pods/s, 100% of the sized webhook phase's 150.0 pods/s" + tail},
		{"against the pod + Secret phase", o, baselines{secret: 200}, head + ": 75% of the pod + Secret phase's 200.0 pods/s" + tail},
		{"against the no-op webhook phase", o, baselines{noop: 300}, head + ": 50% of the no-op webhook phase's 300.0 pods/s" + tail},
		{"against the sized webhook phase", o, baselines{sized: 250}, head + ": 60% of the sized webhook phase's 250.0 pods/s" + tail},
		{"no baseline", o, baselines{}, head + " (no pod + Secret, no-op or sized webhook phase in this run to compare with)"},
		{"none", secretOutcome{pods: 3}, baselines{secret: 200, noop: 160}, "pods with their bootstrap Secret: none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := closedLoopSecrets(tc.o, tc.b); got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Each baseline is compared with those before it, not itself, and only the
// baseline phases set one.
func TestBaselinesInPhaseOrder(t *testing.T) {
	var b baselines
	steps := []struct {
		ns   string
		rate float64
		want []string
	}{
		{nsPlain, 900, nil},
		{nsSecret, 400, nil},
		{nsNoop, 300, []string{"75% of the pod + Secret phase's 400.0 pods/s"}},
		{nsSized, 240, []string{"60% of the pod + Secret phase's 400.0 pods/s", "80% of the no-op webhook phase's 300.0 pods/s"}},
		{nsMeshed, 120, []string{"30% of the pod + Secret phase's 400.0 pods/s", "40% of the no-op webhook phase's 300.0 pods/s", "50% of the sized webhook phase's 240.0 pods/s"}},
	}
	for _, st := range steps {
		if got := b.against(st.rate); !slices.Equal(got, st.want) {
			t.Errorf("%s at %.0f pods/s: %q, want %q", st.ns, st.rate, got, st.want)
		}
		b.set(st.ns, st.rate)
	}
	if b != (baselines{secret: 400, noop: 300, sized: 240}) {
		t.Errorf("baselines %+v: want the pod + Secret, noop and sized phases' rates only", b)
	}
}

func TestSecretLines(t *testing.T) {
	o := secretOutcome{pods: 4, unlabelled: 1, withSecret: 2, before: 1, delays: []time.Duration{0, 40 * time.Millisecond}, missingAtGrace: 1}
	got := secretLines(o, true)
	want := []string{
		"create returned → bootstrap Secret seen (this tool's watch): p50 40.00 ms  p99 40.00 ms  max 40.00 ms over 2; 1 already there when their create returned (0 ms)",
		"bootstrap Secrets of 4 created pods: 1 without their Secret 5s after the phase ended (must be 0); 1 never seen (waited while new ones kept appearing, until none for 10s); 1 created pods came back without a proxy uuid (not injected)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("open loop\n got %q\nwant %q", got, want)
	}
	// A closed loop has no grace deadline; nothing seen, no delay line.
	got = secretLines(secretOutcome{pods: 2, missingAtGrace: 2}, false)
	if len(got) != 1 || got[0] != "bootstrap Secrets of 2 created pods: 2 never seen (waited while new ones kept appearing, until none for 10s)" {
		t.Errorf("closed loop: %q", got)
	}
}

func TestWrittenByWriter(t *testing.T) {
	scrape := func(admission, controller, repair int) map[string]float64 {
		text := "# TYPE fsm_webhooks_injector_bootstrap_secrets_written_total counter\n" +
			`fsm_webhooks_injector_bootstrap_secrets_written_total{writer="admission"} ` + strconv.Itoa(admission) + "\n" +
			`fsm_webhooks_injector_bootstrap_secrets_written_total{writer="controller"} ` + strconv.Itoa(controller) + "\n" +
			`fsm_webhooks_injector_bootstrap_secrets_written_total{writer="repair"} ` + strconv.Itoa(repair) + "\n"
		fams, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		v, ok := fams.byLabel("fsm_webhooks_injector_bootstrap_secrets_written_total", "writer")
		if !ok {
			t.Fatal("family not found")
		}
		return v
	}
	before, after := scrape(1, 0, 0), scrape(1, 300, 2)
	if got, want := writtenText(before, after), "admission 0, controller 300, repair 2"; got != want {
		t.Errorf("writtenText = %q, want %q", got, want)
	}
	// A writer serve adds later is shown, not dropped.
	after["kubelet"] = 4
	if got, want := writtenText(before, after), "admission 0, controller 300, repair 2, kubelet 4"; got != want {
		t.Errorf("writtenText = %q, want %q", got, want)
	}
	if _, ok := (families{}).byLabel("fsm_webhooks_injector_bootstrap_secrets_written_total", "writer"); ok {
		t.Error("an absent family must not be ok")
	}
}
