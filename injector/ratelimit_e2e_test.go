package injector_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testNamespaceLimit runs a second injector, for mesh "limited", whose
// namespaces get 2 certificates at once and then one every 5 s, behind the
// real apiserver: a pod over the limit is refused with 429, the namespace and
// the limit named, with no certificate issued nor Secret written; a client
// that retries (client-go does, after Retry-After) gets its pod injected.
func (e *e2e) testNamespaceLimit(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	const mesh = "limited"
	limit := injector.NamespaceLimit{PerSecond: 0.2, Burst: 2}
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	h, err := injector.NewHandler(injector.Options{
		Client: e.cl, Namespaces: e.cl, Issuer: ca, MeshName: mesh, FSMNamespace: fsmNamespace,
		NamespaceLimit: limit, Logger: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// serveMesh waits with dry-run probes: they issue nothing and take no token.
	ns := e.serveMesh(ctx, t, servingCA, mesh, "limited", h)

	// Pods are created, without client-go's retries, until one is
	// refused: the burst, and then one more for each token the bucket
	// refilled meanwhile. On a fast machine that is the burst alone; one
	// that takes the refill interval (5 s) over these creates has been
	// given a token more by the limit itself, which a fixed "the third pod
	// is refused" took for a failure.
	cs, err := kubernetes.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The counter is the process's: another round of this test (-count)
	// counted before.
	limitedBefore := rateLimitedMetric(t, ns.Name)
	began := time.Now()
	admitted := 0
	for {
		err = cs.CoreV1().RESTClient().Post().Namespace(ns.Name).Resource("pods").Body(pod(fmt.Sprintf("burst-%d", admitted), ns.Name)).MaxRetries(0).Do(ctx).Error()
		if err != nil {
			break
		}
		admitted++
		// Tokens taken at most: the burst and what refilled by now.
		if allowed := limit.Burst + int(limit.PerSecond*time.Since(began).Seconds()); admitted > allowed {
			t.Fatalf("%d pods admitted in %s, over the limit's %d (burst %d, %v/s)", admitted, time.Since(began).Round(time.Millisecond), allowed, limit.Burst, limit.PerSecond)
		}
	}
	if admitted < limit.Burst {
		t.Fatalf("pod %d of the burst of %d: %v", admitted, limit.Burst, err)
	}
	want := `namespace "limited" is over the sidecar injector's limit of 0.2 bootstrap certificates and Secrets per second (burst 2); retry in `
	var status *apierrors.StatusError
	if !errors.As(err, &status) || !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("pod over the limit: %v, want 429 containing %q", err, want)
	}
	if d := status.ErrStatus.Details; d == nil || d.RetryAfterSeconds < 1 || d.RetryAfterSeconds > 5 {
		t.Errorf("details %+v, want retryAfterSeconds in 1..5", d)
	}
	if n := rateLimitedMetric(t, ns.Name) - limitedBefore; n != 1 {
		t.Errorf(`fsm_webhooks_injector_rate_limited_total{namespace=%q} went up by %v, want 1`, ns.Name, n)
	}
	if got := ca.Issued(); got != int64(admitted) {
		t.Errorf("%d certificates issued for %d admitted pods: the refused pod got one", got, admitted)
	}

	// client-go waits Retry-After and tries again: the pod is created. That
	// needs the bucket still empty when the create arrives, while the
	// refusal's Retry-After is only the time to the next token (under a
	// second when pods were admitted as the bucket refilled): a loaded
	// machine's gap from that refusal to this create can outlast it, and the
	// pod is then rightly admitted at once. So the bucket is emptied again
	// and another pod tried, until one was refused on its way in.
	create := func() error {
		err := cs.CoreV1().RESTClient().Post().Namespace(ns.Name).Resource("pods").Body(pod(fmt.Sprintf("burst-%d", admitted), ns.Name)).MaxRetries(0).Do(ctx).Error()
		if err == nil {
			admitted++
		}
		return err
	}
	for tries, deadline := 0, time.Now().Add(time.Minute); ; tries++ {
		refusals := rateLimitedMetric(t, ns.Name)
		start := time.Now()
		p := pod(fmt.Sprintf("retried-%d", tries), ns.Name)
		if err := e.cl.Create(ctx, p); err != nil {
			t.Fatalf("pod created by a retrying client: %v", err)
		}
		admitted++
		took := time.Since(start)
		if p.Labels[injector.ProxyUUIDLabel] == "" {
			t.Fatalf("retried pod not injected")
		}
		if rateLimitedMetric(t, ns.Name) > refusals {
			// Refused, then admitted: client-go waited Retry-After, at
			// least a second, for a token.
			if took < time.Second {
				t.Errorf("retried pod created after %s, refused on the way; want client-go to wait Retry-After (1 s at least)", took)
			}
			t.Logf("retried pod refused, then created after %s (try %d)", took.Round(time.Millisecond), tries+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retried create met an empty bucket in %d tries", tries+1)
		}
		for {
			if err := create(); err != nil {
				if !apierrors.IsTooManyRequests(err) {
					t.Fatalf("emptying the bucket again: %v", err)
				}
				break
			}
		}
	}
	if s := bootstrapSecrets(t, ctx, e.cl, ns.Name); len(s) != admitted {
		t.Errorf("%d bootstrap Secrets, want %d: one per created pod, none for refusals", len(s), admitted)
	}
	if got := ca.Issued(); got != int64(admitted) {
		t.Errorf("%d certificates issued, want %d", got, admitted)
	}
}

// rateLimitedMetric is fsm_webhooks_injector_rate_limited_total{namespace}.
func rateLimitedMetric(t *testing.T, namespace string) float64 {
	t.Helper()
	n, _ := counterSum(t, "fsm_webhooks_injector_rate_limited_total", map[string]string{"namespace": namespace})
	return n
}
