package injector

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestRateLimitedSeriesGoWithTheirNamespace: each namespace refused by
// --injector-namespace-rate gets its own
// fsm_webhooks_injector_rate_limited_total series, which stayed exported
// after the namespace was deleted, until the process restarted: with
// namespaces created and deleted by CI, one more series per namespace for
// the life of the process. A namespace's deletion (the informer's DELETE,
// or a tombstone after a relist) now drops its series and its bucket; the
// series of namespaces still there stay.
func TestRateLimitedSeriesGoWithTheirNamespace(t *testing.T) {
	const n, prefix = 30, "ci-limited-"
	var nss []client.Object
	for i := range n {
		nss = append(nss, monitoredNamespace(fmt.Sprintf("%s%d", prefix, i), nil))
	}
	f := newHandlerFixture(t, stubIssuer{}, nil, nss...)
	limit := NamespaceLimit{PerSecond: 0.001, Burst: 1}
	var err error
	if f.h.limiter, err = newNamespaceLimiter(limit); err != nil {
		t.Fatal(err)
	}
	f.h.opts.NamespaceLimit = limit
	for i := range n {
		ns := fmt.Sprintf("%s%d", prefix, i)
		for range 2 { // the burst, then one refused
			f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				r.Namespace = ns
				p := simplePod(nil)
				p.Namespace = ns
				r.Object = runtime.RawExtension{Raw: mustJSON(t, p)}
			}), "application/json")
		}
	}
	if got := rateLimitedSeries(t, prefix); got != n {
		t.Fatalf("%d rate-limited series for the %d namespaces, want one each", got, n)
	}

	// All but the last two deleted: half reported as they are, half as
	// tombstones (missed during a relist); one more namespace that was
	// never limited.
	for i := range n - 2 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", prefix, i)}}
		if i%2 == 1 {
			f.h.namespaceDeleted(toolscache.DeletedFinalStateUnknown{Key: ns.Name, Obj: ns})
			continue
		}
		f.h.namespaceDeleted(ns)
	}
	f.h.namespaceDeleted(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "never-limited"}})
	if got := rateLimitedSeries(t, prefix); got != 2 {
		t.Errorf("%d rate-limited series after %d of the %d namespaces were deleted, want 2 (those still there)", got, n-2, n)
	}
	f.h.limiter.mu.Lock()
	buckets := 0
	for ns := range f.h.limiter.buckets {
		if strings.HasPrefix(ns, prefix) {
			buckets++
		}
	}
	f.h.limiter.mu.Unlock()
	if buckets != 2 {
		t.Errorf("%d buckets left, want 2", buckets)
	}
	if _, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
		ns := fmt.Sprintf("%s%d", prefix, n-1)
		r.Namespace = ns
		p := simplePod(nil)
		p.Namespace = ns
		r.Object = runtime.RawExtension{Raw: mustJSON(t, p)}
	}), "application/json"); resp.Result == nil || resp.Result.Code != http.StatusTooManyRequests {
		t.Errorf("a namespace still there lost its bucket: %+v", resp.Result)
	}
}

// rateLimitedSeries counts the series of
// fsm_webhooks_injector_rate_limited_total whose namespace starts with
// prefix.
func rateLimitedSeries(t *testing.T, prefix string) int {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() != "fsm_webhooks_injector_rate_limited_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && strings.HasPrefix(l.GetValue(), prefix) {
					n++
				}
			}
		}
	}
	return n
}
