package uninstall

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// slowRequests delays every request match selects by delay, as a loaded
// apiserver answers, and records the most in flight at once.
type slowRequests struct {
	next           http.RoundTripper
	match          func(*http.Request) bool
	delay          time.Duration
	inFlight, peak atomic.Int32
}

func (s *slowRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	if !s.match(r) {
		return s.next.RoundTrip(r)
	}
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	time.Sleep(s.delay)
	return s.next.RoundTrip(r)
}

// TestHandOverWritesConcurrently: the uninstall hook has the chart's
// --timeout (120 s; the Job's deadline 60 s more, its retries included) to
// hand over every bootstrap Secret: one write per running meshed pod. One
// write at a time, 50,000 meshed pods needed the apiserver to answer each
// in 2.4 ms; at 20 ms the hand-over needs 1,000 s, the hook fails, and every
// Secret not reached keeps no owner and outlives its pod. Through a real
// apiserver whose writes take 50 ms here, the hand-over keeps several in
// flight and every Secret is settled.
func TestHandOverWritesConcurrently(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 0 // the orphans stand for Secrets older than the grace
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 64
	for i := range n {
		id := fmt.Sprintf("u%d", i)
		if i%2 == 0 { // half running, half orphans
			if _, err := cs.CoreV1().Pods("app").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{injector.ProxyUUIDLabel: id}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cs.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name:   fsmnames.BootstrapSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": "fsm", injector.ProxyUUIDLabel: id},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	slow := &slowRequests{delay: 50 * time.Millisecond, match: func(r *http.Request) bool {
		return r.Method == http.MethodPatch || r.Method == http.MethodDelete
	}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { slow.next = rt; return slow })
	cfg.QPS, cfg.Burst = -1, 0 // as in the hook's pod (controller-runtime's in-cluster config)
	start := time.Now()
	if err := handOverBootstrapSecrets(ctx, cs, metadataFor(t, cfg), "fsm", testr.New(t)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if p := slow.peak.Load(); p < 8 {
		t.Errorf("at most %d write(s) in flight at once (took %s for %d Secrets at %s a write); want at least 8", p, took.Round(time.Millisecond), n, slow.delay)
	}
	list, err := cs.CoreV1().Secrets("app").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n/2 {
		t.Errorf("%d Secrets left, want the %d of running pods", len(list.Items), n/2)
	}
	for _, s := range list.Items {
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Pod" {
			t.Errorf("Secret %s: owners %+v, want its pod", s.Name, s.OwnerReferences)
		}
	}
}
