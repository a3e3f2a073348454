package injector

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Defaults of serve's --injector-namespace-rate and --injector-namespace-burst.
// kube-controller-manager creates pods at most at its client QPS (20/s by
// default, rarely raised above a few hundred), and a first default of 20/s
// capped the load tool's closed loop at 20 pods/s in one namespace: the
// limit sits well above what controllers create, so a ReplicaSet or Job
// does not wait, while a caller posting AdmissionReviews itself still gets
// at most this many certificates and Secrets a second per namespace and
// replica (each swept a minute later when no pod appears).
const (
	DefaultNamespaceRate  = 200
	DefaultNamespaceBurst = 400
)

// NamespaceLimit bounds bootstrap certificate issuance and Secret writes per
// namespace (one token per injected pod that gets a Secret; dry runs and
// NodeLevel pods take none), per injector replica. The zero value is no
// limit.
type NamespaceLimit struct {
	// PerSecond is the sustained rate; 0 disables the limit.
	PerSecond float64
	// Burst is how many may be taken at once; at least 1 when PerSecond is
	// set.
	Burst int
}

func (l NamespaceLimit) validate() error {
	switch {
	case l.PerSecond < 0 || math.IsNaN(l.PerSecond) || math.IsInf(l.PerSecond, 0):
		return fmt.Errorf("injector: NamespaceLimit.PerSecond %v must be 0 (no limit) or a positive rate", l.PerSecond)
	case l.PerSecond > 0 && l.Burst < 1:
		return fmt.Errorf("injector: NamespaceLimit.Burst %d must be at least 1", l.Burst)
	}
	return nil
}

// namespaceLimiter is a token bucket per namespace. A nil *namespaceLimiter
// allows everything.
type namespaceLimiter struct {
	limit NamespaceLimit
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastPrune time.Time
}

func newNamespaceLimiter(l NamespaceLimit) (*namespaceLimiter, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if l.PerSecond == 0 {
		return nil, nil
	}
	return &namespaceLimiter{limit: l, now: time.Now, buckets: map[string]*rate.Limiter{}}, nil
}

// allow takes a token of namespace's bucket; when there is none it returns
// how long until one is there.
func (l *namespaceLimiter) allow(namespace string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	b := l.buckets[namespace]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(l.limit.PerSecond), l.limit.Burst)
		l.buckets[namespace] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// prune drops full buckets, at most once per refill time: a full bucket is
// the same as a new one, and deleted namespaces would otherwise stay forever.
// l.mu is held.
func (l *namespaceLimiter) prune(now time.Time) {
	refill := time.Duration(float64(l.limit.Burst) / l.limit.PerSecond * float64(time.Second))
	if now.Sub(l.lastPrune) < max(refill, time.Minute) {
		return
	}
	l.lastPrune = now
	for ns, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.limit.Burst) {
			delete(l.buckets, ns)
		}
	}
}

// forget drops namespace's bucket (a deleted namespace's).
func (l *namespaceLimiter) forget(namespace string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, namespace)
}

// rateLimitedResponse refuses an admission over namespace's limit with 429
// and Retry-After: client-go (the ReplicaSet and Job controllers, kubectl)
// retries it by itself after the delay.
func rateLimitedResponse(namespace string, l NamespaceLimit, retryAfter time.Duration) admission.Response {
	secs := int32(math.Ceil(retryAfter.Seconds()))
	msg := fmt.Sprintf("namespace %q is over the sidecar injector's limit of %g bootstrap certificates and Secrets per second (burst %d); "+
		"retry in %ds (the limit is per injector replica: flags --injector-namespace-rate and --injector-namespace-burst)",
		namespace, l.PerSecond, l.Burst, secs)
	return tooManyRequests(msg, secs)
}

// tooManyRequests is an admission refused with 429 and a Retry-After of
// retrySeconds: what the apiserver hands back to its client for it to retry.
func tooManyRequests(msg string, retrySeconds int32) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusTooManyRequests,
			Reason:  metav1.StatusReasonTooManyRequests,
			Message: msg,
			Details: &metav1.StatusDetails{RetryAfterSeconds: retrySeconds},
		},
	}}
}

// DefaultMaxInFlight is serve's --injector-max-in-flight. Admissions take
// a few milliseconds plus one Secret write, so a replica has a handful in
// flight at hundreds of pods per second; 128 leaves room for an apiserver
// slowed to half a second per write, while 128 pods' reviews stay a few MiB.
const DefaultMaxInFlight = 128

// overloadedResponse refuses an admission that found limit admissions being
// handled for as long as it could wait, with 429 and Retry-After like the
// namespace limit.
func overloadedResponse(limit int) admission.Response {
	const retry = 1
	return tooManyRequests(fmt.Sprintf("the sidecar injector has been handling its limit of %d admissions at once for %s; retry in %ds "+
		"(the limit is per injector replica: flag --injector-max-in-flight)", limit, maxQueueWait, retry), retry)
}

var overloaded = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "fsm_webhooks_injector_overloaded_total",
	Help: "Pod admissions refused with 429 because --injector-max-in-flight admissions were being handled for as long as they could wait (1 s).",
})

func init() { metrics.Registry.MustRegister(overloaded) }

var rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "fsm_webhooks_injector_rate_limited_total",
	Help: "Pod admissions refused because their namespace was over the bootstrap certificate and Secret rate limit, by namespace.",
}, []string{"namespace"})

func init() { metrics.Registry.MustRegister(rateLimited) }

// overLimit takes a token of namespace's bucket before a certificate is
// issued and a Secret written; without one it returns the refusal.
func (h *Handler) overLimit(log reqLog, namespace string) (admission.Response, bool) {
	ok, wait := h.limiter.allow(namespace)
	if ok {
		return admission.Response{}, false
	}
	rateLimited.WithLabelValues(namespace).Inc()
	log.V(1).Info("refusing pod: namespace over its bootstrap Secret rate limit", "retryAfter", wait)
	return rateLimitedResponse(namespace, h.opts.NamespaceLimit, wait), true
}

// ForgetDeletedNamespaces makes the Namespace informer of informers drop
// what the handler keeps per namespace once it reports one deleted: its
// fsm_webhooks_injector_rate_limited_total series and its bucket. A series
// per namespace ever refused otherwise stayed exported until the process
// restarted: with namespaces created and deleted by CI, one more series on
// every scrape for each, for months. The increments since the last scrape
// go with the series; none come after, as the apiserver admits no pod in a
// namespace being deleted. Call it before the cache starts, as the
// informer's other users (HandlerCaches) are registered.
func (h *Handler) ForgetDeletedNamespaces(ctx context.Context, informers cache.Informers) error {
	inf, err := informers.GetInformer(ctx, &corev1.Namespace{}, cache.BlockUntilSynced(false))
	if err == nil {
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: h.namespaceDeleted})
	}
	if err != nil {
		return fmt.Errorf("injector: watching namespaces for their deletion: %w", err)
	}
	return nil
}

// namespaceDeleted is the Namespace informer's DELETE: obj is the namespace,
// or a tombstone (a deletion missed during a relist) keyed by its name.
func (h *Handler) namespaceDeleted(obj any) {
	if name, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		h.forgetNamespace(name)
	}
}

// forgetNamespace drops what the handler keeps of a deleted namespace.
func (h *Handler) forgetNamespace(name string) {
	h.limiter.forget(name)
	rateLimited.DeleteLabelValues(name)
}
