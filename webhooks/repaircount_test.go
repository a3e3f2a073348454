package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// laggingCA is ca as a replica whose CA watch is behind sees it: CABundle
// answers what ca trusted lag ago, and no change is notified, so the
// replica learns of one at a resync, late.
type laggingCA struct {
	ca  *certstest.CA
	lag time.Duration

	mu   sync.Mutex
	seen []seenBundle
}

type seenBundle struct {
	bundle []byte
	at     time.Time
}

func (l *laggingCA) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	return l.ca.Issue(ctx, req)
}

func (l *laggingCA) Provider() string { return l.ca.Provider() }

func (l *laggingCA) CABundle(ctx context.Context) ([]byte, error) {
	b, err := l.ca.CABundle(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.seen); n == 0 || !bytes.Equal(l.seen[n-1].bundle, b) {
		l.seen = append(l.seen, seenBundle{b, now})
	}
	out := l.seen[0].bundle
	for _, s := range l.seen {
		if now.Sub(s.at) >= l.lag {
			out = s.bundle
		}
	}
	return out, nil
}

// testRotationTwoReplicas: a root rotation with two replicas, one of which
// learns of each phase late (its CA watch lags), as two pods of a
// Deployment do. The lagging replica writes the caBundle of the phase
// before back, the other restores its own: our servers' writes, every one,
// so neither is a repair. fsm_webhooks_cabundle_repairs_total and the
// CABundleRepaired Event (and the FSMWebhooksCABundleRepairs alert) are for
// someone else changing the caBundle: a third party replacing or emptying it
// afterwards is still repaired and counted, once across both replicas.
func testRotationTwoReplicas(t *testing.T) {
	tc := newCase(t, "rotation2", true)
	ctx := context.Background()
	w := tc.webhook(freePort(t))
	first := start(t, tc.options(), w)
	first.waitReady(t)
	tc.waitAdmitting(t)
	lagging := tc.options()
	lagging.Issuer = &laggingCA{ca: tc.ca, lag: 1500 * time.Millisecond}
	second := start(t, lagging, tc.webhook(freePort(t)))
	second.waitReady(t)

	repairs := caBundleRepairs.WithLabelValues(w.Name, ValidatingConfiguration.String())
	repairs0 := testutil.ToFloat64(repairs)
	events0 := repairEvents(t, tc)
	cfgWatch, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", tc.configName()).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cfgWatch.Stop()

	oldRoot := tc.ca.Active()
	trusted, err := TrustCheck(env.Config, Options{}, []Registration{w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	l := tc.startLoop()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = rootrotation.Rotate(rctx, rootrotation.Options{
		CA: tc.ca, Issuer: tc.ca, Client: tc.cs,
		Specs:        []servingcert.Spec{w.ServingSpec(tc.options())},
		Trusted:      trusted,
		Grace:        3 * time.Second,
		PollInterval: 200 * time.Millisecond,
		Settle:       time.Second,
		Log:          testLog(t, "rotation"),
	})
	if err != nil {
		t.Fatal(err)
	}
	newRoot := awaitNewRootOnly(t, tc, oldRoot)
	// The lagging replica's last view of the rotation comes lag later.
	time.Sleep(3 * time.Second)
	l.Finish(t)

	// The lagging replica did write a phase's bundle back: without that
	// this test shows nothing.
	reverts := 0
	hadNew, lostOld := false, false
	for done := false; !done; {
		select {
		case ev := <-cfgWatch.ResultChan():
			cfg, ok := ev.Object.(*admv1.ValidatingWebhookConfiguration)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			cas, err := certs.ParseCertsPEM(cfg.Webhooks[0].ClientConfig.CABundle)
			if err != nil {
				t.Fatal(err)
			}
			withOld, withNew := holds(cas, oldRoot), holds(cas, newRoot)
			if (hadNew && !withNew) || (lostOld && withOld) {
				reverts++
			}
			hadNew, lostOld = hadNew || withNew, lostOld || !withOld
		case <-time.After(200 * time.Millisecond):
			done = true
		}
	}
	if reverts == 0 {
		t.Error("the lagging replica never wrote an earlier phase's caBundle back")
	}
	t.Logf("caBundle written back to an earlier phase's %d time(s)", reverts)
	if got := testutil.ToFloat64(repairs) - repairs0; got != 0 {
		t.Errorf("a root rotation with two replicas counted %v caBundle repair(s), want 0", got)
	}
	if got := repairEvents(t, tc) - events0; got != 0 {
		t.Errorf("a root rotation with two replicas recorded %d CABundleRepaired Event(s), want 0", got)
	}

	// Someone else's write is repaired and counted once, whichever replica
	// repairs it. Replicas that wrote each other's bundles back may be
	// backing off their repairs for up to 30 s.
	good := mustBundle(t, tc)
	for i, bad := range [][]byte{otherBundle(t, newCA(t)), nil} {
		cfg := tc.config(t)
		cfg.Webhooks[0].ClientConfig.CABundle = bad
		if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := float64(i + 1)
		waitFor(t, settleWithin+30*time.Second, "the overwritten caBundle repaired and counted", func() error {
			if !bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, good) {
				return errTest("not repaired yet")
			}
			if got := testutil.ToFloat64(repairs) - repairs0; got != want {
				return fmt.Errorf("%v repair(s) counted, want %v", got, want)
			}
			return nil
		})
		// The other replica must not count it again.
		time.Sleep(2 * time.Second)
		if got := testutil.ToFloat64(repairs) - repairs0; got != want {
			t.Errorf("after a third party's change #%d: %v repair(s) counted, want %v", i+1, got, want)
		}
	}
	waitFor(t, settleWithin, "one CABundleRepaired Event per third-party change", func() error {
		if got := repairEvents(t, tc) - events0; got != 2 {
			return fmt.Errorf("%d CABundleRepaired Event(s), want 2", got)
		}
		return nil
	})
}

// repairEvents counts the CABundleRepaired Events on tc's configuration,
// repeats included.
func repairEvents(t *testing.T, tc *testCase) int {
	t.Helper()
	evs, err := tc.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", tc.configName()).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Reason == "CABundleRepaired" {
			n += int(max(e.Count, 1))
		}
	}
	return n
}
