package webhooks

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// testReadinessSurvivesMetadataEdit: a change to the serving Secret that does
// not touch the cert (a label, as kubectl label, Helm or a GitOps tool
// adds) must not make /readyz fail: the README says /readyz passes while
// "its listener served it [the loaded cert] within the last three rounds",
// and the listener served that very cert a moment ago. Every replica loads
// the same Secret event at once and the chart's readiness probe has
// failureThreshold 1, so a probe landing in the window takes the replica out
// of the injector's endpoints.
func testReadinessSurvivesMetadataEdit(t *testing.T) {
	tc := newCase(t, "rv-ready", true)
	r := start(t, tc.options(), tc.webhook(freePort(t)))
	r.waitReady(t)
	h := r.hooks[0]
	waitFor(t, settleWithin, "/readyz passing", func() error { return h.serving(time.Now()) })
	before := h.src.Current()

	var (
		mu       sync.Mutex
		armed    bool
		failures []string
	)
	// What a kubelet probe arriving right after the Secret event sees.
	h.src.OnChange(func(l *servingcert.Loaded) {
		mu.Lock()
		defer mu.Unlock()
		if !armed {
			return
		}
		if err := h.serving(time.Now()); err != nil {
			failures = append(failures, "rv "+l.ResourceVersion+": "+err.Error())
		}
	})
	// A tight poll, as probes would land, to measure the window.
	stop := make(chan struct{})
	var window time.Duration
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		var firstFail time.Time
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := h.serving(time.Now())
			switch {
			case err != nil && firstFail.IsZero():
				firstFail = time.Now()
			case err == nil && !firstFail.IsZero():
				window += time.Since(firstFail)
				firstFail = time.Time{}
			}
		}
	}()

	mu.Lock()
	armed = true
	mu.Unlock()
	updated := labelServingSecret(t, tc)
	waitFor(t, settleWithin, "the labelled Secret loaded", func() error {
		if cur := h.src.Current(); cur == nil || cur.ResourceVersion != updated.ResourceVersion {
			return errTest("not loaded yet")
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	pollWG.Wait()

	if !h.src.Current().Chain[0].Equal(before.Chain[0]) {
		t.Fatal("the cert changed; this test needs a metadata-only edit")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 || window > 0 {
		t.Errorf("/readyz failed after a label-only edit of the serving Secret (same cert served throughout), for %s in a tight poll:\n%v", window, failures)
	}
}

// testWholeStateSurvivesMetadataEdit: the same label-only edit resets the
// end-to-end Probe's result, so /readyz/<name> and fsm_webhooks_ready drop
// for as long as a Probe takes (a dry run through the apiserver), though
// the README keys that proof on "that cert and caBundle", neither of which
// changed.
func testWholeStateSurvivesMetadataEdit(t *testing.T) {
	tc := newCase(t, "rv-whole", true)
	w := tc.webhook(freePort(t))
	w.Probe = func(ctx context.Context) error {
		// A dry run through a busy apiserver.
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
		return tc.admitOnce(ctx)
	}
	r := start(t, tc.options(), w)
	r.waitReady(t)
	h := r.hooks[0]
	before := h.src.Current()
	updated := labelServingSecret(t, tc)
	// Polled from the edit until the labelled Secret is loaded (a loaded
	// machine delivers the watch event seconds late) and for 3 s after, well
	// past a Probe rerun.
	var firstErr error
	var loadedAt time.Time
	for deadline := time.Now().Add(settleWithin); loadedAt.IsZero() || time.Since(loadedAt) < 3*time.Second; time.Sleep(5 * time.Millisecond) {
		if err := r.Ready(context.Background()); err != nil && firstErr == nil {
			firstErr = err
		}
		if !loadedAt.IsZero() {
			continue
		}
		if cur := h.src.Current(); cur.ResourceVersion == updated.ResourceVersion {
			loadedAt = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatalf("the labelled Secret (resourceVersion %s) not loaded within %s; serving resourceVersion %s", updated.ResourceVersion, settleWithin, cur.ResourceVersion)
		}
	}
	if !h.src.Current().Chain[0].Equal(before.Chain[0]) {
		t.Fatal("the cert changed; this test needs a metadata-only edit")
	}
	if firstErr != nil {
		t.Errorf("Ready (/readyz/<name>, fsm_webhooks_ready) failed after a label-only edit of the serving Secret, same cert and caBundle: %v", firstErr)
	}
}

// labelServingSecret edits only the serving Secret's metadata, as kubectl
// label, Helm or a GitOps tool does, and returns it as stored.
func labelServingSecret(t *testing.T, tc *testCase) *corev1.Secret {
	t.Helper()
	sec := tc.secret(t)
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	sec.Labels["example.com/touched"] = "yes"
	updated, err := tc.cs.CoreV1().Secrets(tc.ns).Update(context.Background(), sec, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}
