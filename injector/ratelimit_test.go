package injector

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestNamespaceLimiter(t *testing.T) {
	type take struct {
		after time.Duration // clock advance before taking
		ns    string
		ok    bool
		wait  time.Duration // when refused
	}
	for _, tc := range []struct {
		name  string
		limit NamespaceLimit
		takes []take
	}{
		{"burst, then one per interval", NamespaceLimit{PerSecond: 2, Burst: 3}, []take{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0},
			{0, "a", false, 500 * time.Millisecond},
			{200 * time.Millisecond, "a", false, 300 * time.Millisecond}, // a refusal takes no token
			{300 * time.Millisecond, "a", true, 0},
			{0, "a", false, 500 * time.Millisecond},
		}},
		{"namespaces do not share a bucket", NamespaceLimit{PerSecond: 1, Burst: 1}, []take{
			{0, "a", true, 0}, {0, "a", false, time.Second}, {0, "b", true, 0}, {0, "b", false, time.Second},
		}},
		{"full again after the refill time", NamespaceLimit{PerSecond: 1, Burst: 2}, []take{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", false, time.Second},
			{2 * time.Second, "a", true, 0}, {0, "a", true, 0}, {0, "a", false, time.Second},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := newNamespaceLimiter(tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			l.now = clock.now
			for i, tk := range tc.takes {
				clock.advance(tk.after)
				ok, wait := l.allow(tk.ns)
				if ok != tk.ok || wait != tk.wait {
					t.Fatalf("take %d (%s): allowed %v, wait %s; want %v, %s", i, tk.ns, ok, wait, tk.ok, tk.wait)
				}
			}
		})
	}
}

// Full buckets are dropped (a deleted namespace does not stay forever); a
// bucket still refilling is kept, or its namespace would get a new burst.
func TestNamespaceLimiterPrunes(t *testing.T) {
	l, _ := newNamespaceLimiter(NamespaceLimit{PerSecond: 1, Burst: 100})
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l.now = clock.now
	l.allow("gone")
	clock.advance(50 * time.Second)
	for range 100 {
		l.allow("busy")
	}
	clock.advance(60 * time.Second) // "gone" full again, "busy" at 60 of 100
	l.allow("other")
	if _, ok := l.buckets["gone"]; ok {
		t.Error("a full bucket was kept")
	}
	if _, ok := l.buckets["busy"]; !ok {
		t.Error("a bucket still refilling was dropped")
	}
}

func TestNamespaceLimitValidate(t *testing.T) {
	for _, tc := range []struct {
		l    NamespaceLimit
		want string
	}{
		{NamespaceLimit{}, ""},
		{NamespaceLimit{PerSecond: 0.5, Burst: 1}, ""},
		{NamespaceLimit{PerSecond: -1, Burst: 1}, "injector: NamespaceLimit.PerSecond -1 must be 0 (no limit) or a positive rate"},
		{NamespaceLimit{PerSecond: 5}, "injector: NamespaceLimit.Burst 0 must be at least 1"},
	} {
		_, err := newNamespaceLimiter(tc.l)
		if got := errString(err); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.l, got, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestHandlerUntrustedCaller posts AdmissionReviews as a caller that is not
// the apiserver would: no certificate is issued and no Secret written unless
// the namespace (as the cache has it) is one the mesh injects, and a
// namespace over its limit is refused with 429, counted, and writes nothing.
func TestHandlerUntrustedCaller(t *testing.T) {
	ignored := monitoredNamespace("ignored", nil)
	ignored.Labels[fsmnames.IgnoreLabel] = "true"
	f := newHandlerFixture(t, stubIssuer{}, nil, ignored, monitoredNamespace("app2", nil))
	limit := NamespaceLimit{PerSecond: 0.5, Burst: 2}
	var err error
	if f.h.limiter, err = newNamespaceLimiter(limit); err != nil {
		t.Fatal(err)
	}
	f.h.opts.NamespaceLimit = limit
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	f.h.limiter.now = clock.now

	inNamespace := func(ns string, podNS string) func(*admissionv1.AdmissionRequest) {
		return func(r *admissionv1.AdmissionRequest) {
			r.Namespace = ns
			p := simplePod(nil)
			p.Namespace = podNS
			r.Object = runtime.RawExtension{Raw: mustJSON(t, p)}
		}
	}
	// The counter is the process's (-count runs this again).
	limitedBefore := testutil.ToFloat64(rateLimited.WithLabelValues("app"))
	for _, tc := range []struct {
		name    string
		req     func(*admissionv1.AdmissionRequest)
		allowed bool
		code    int32
		msg     string
		secrets int // total written so far
	}{
		{"ignored namespace", inNamespace("ignored", ""), true, http.StatusOK, "", 0},
		{"unmonitored namespace", inNamespace("other", ""), true, http.StatusOK, "", 0},
		{"namespace the cache does not have", inNamespace("nowhere", ""), false, http.StatusInternalServerError, `reading namespace nowhere`, 0},
		// The request's namespace is where the Secret goes; the pod's own
		// field (the apiserver makes them equal) is never trusted.
		{"pod claims a monitored namespace", inNamespace("other", "app"), true, http.StatusOK, "", 0},
		{"first of the burst", inNamespace("app", ""), true, http.StatusOK, "", 1},
		{"second of the burst", inNamespace("app", "app"), true, http.StatusOK, "", 2},
		{"over the limit", inNamespace("app", ""), false, http.StatusTooManyRequests,
			`namespace "app" is over the sidecar injector's limit of 0.5 bootstrap certificates and Secrets per second (burst 2); retry in 2s`, 2},
		{"another namespace has its own bucket", inNamespace("app2", ""), true, http.StatusOK, "", 3},
		{"dry run takes no token", func(r *admissionv1.AdmissionRequest) {
			inNamespace("app", "")(r)
			r.DryRun = new(bool)
			*r.DryRun = true
		}, true, http.StatusOK, "", 3},
	} {
		_, resp := f.post(t, reviewBody(t, tc.req), "application/json")
		code := int32(http.StatusOK)
		msg := ""
		if resp.Result != nil {
			code, msg = resp.Result.Code, resp.Result.Message
		}
		if resp.Allowed != tc.allowed || code != tc.code || !strings.Contains(msg, tc.msg) || len(f.secrets) != tc.secrets {
			t.Errorf("%s: allowed %v, code %d, %d Secrets, %q; want %v, %d, %d, %q", tc.name, resp.Allowed, code, len(f.secrets), msg,
				tc.allowed, tc.code, tc.secrets, tc.msg)
		}
		if tc.code == http.StatusTooManyRequests &&
			(resp.Result.Reason != metav1.StatusReasonTooManyRequests || resp.Result.Details == nil || resp.Result.Details.RetryAfterSeconds != 2) {
			t.Errorf("%s: result %+v, want reason TooManyRequests and retryAfterSeconds 2 (client-go retries on them)", tc.name, resp.Result)
		}
	}
	if got := testutil.ToFloat64(rateLimited.WithLabelValues("app")) - limitedBefore; got != 1 {
		t.Errorf(`fsm_webhooks_injector_rate_limited_total{namespace="app"} went up by %v, want 1`, got)
	}
	clock.advance(2 * time.Second)
	if _, resp := f.post(t, reviewBody(t, inNamespace("app", "")), "application/json"); !resp.Allowed || len(f.secrets) != 4 {
		t.Errorf("after the refill: allowed %v, %d Secrets; want injected", resp.Allowed, len(f.secrets))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
