package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// lineLog keeps every line logged through it (and prints them like testLog
// when WEBHOOKS_TEST_LOG is set).
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) logger(name string) logr.Logger {
	print := os.Getenv("WEBHOOKS_TEST_LOG") != ""
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
		if print {
			fmt.Fprintln(os.Stderr, name, prefix, args)
		}
	}, funcr.Options{})
}

// count is how many lines hold s.
func (l *lineLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// String is every line kept, one per line.
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// testEmptyConfiguration: a configuration that exists with `webhooks: []`
// (emptied by hand or by a tool, a partial apply) has nothing to patch. The
// server says so once, writes nothing, counts no repair, lets its serving
// cert be written without waiting for a caBundle nobody uses, and does not
// stall a root rotation on it; the webhooks a later upgrade adds get the
// caBundle at once (watch-driven, no back-off left over).
func testEmptyConfiguration(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "empty", true)
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx,
		&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: tc.configName()}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), tc.configName(), metav1.DeleteOptions{})
	})
	logs := &lineLog{}
	opts := tc.options()
	opts.Log = logs.logger(tc.name)
	port := freePort(t)
	w := tc.webhook(port)
	repairs := caBundleRepairs.WithLabelValues(w.Name, ValidatingConfiguration.String())
	repairs0 := testutil.ToFloat64(repairs)
	s := start(t, opts, w)
	h := s.hooks[0]

	const noWebhooks = "has no webhooks"
	events := func(reason string) (int, string) {
		evs, err := tc.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", tc.configName()).String(),
		})
		if err != nil {
			t.Fatal(err)
		}
		n, msg := 0, ""
		for _, e := range evs.Items {
			if e.Reason == reason {
				n += int(max(e.Count, 1))
				msg = e.Message
			}
		}
		return n, msg
	}
	waitFor(t, 30*time.Second, "serving cert loaded", func() error {
		if h.src.Current() == nil {
			return errTest("not loaded")
		}
		return nil
	})
	// Nothing calls the webhook through the configuration, so nothing waits
	// for its caBundle to settle: a lost serving cert is written again at
	// once. Each deletion also runs the loop again: what it did to the
	// configuration is checked below.
	for i := range 3 {
		old := tc.secret(t)
		if err := tc.cs.CoreV1().Secrets(tc.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("serving cert Secret written again (%d)", i+1), func() error {
			sec, err := tc.cs.CoreV1().Secrets(tc.ns).Get(ctx, old.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if sec.UID == old.UID {
				return errTest("still the deleted Secret")
			}
			return nil
		})
	}
	if got := testutil.ToFloat64(repairs) - repairs0; got != 0 {
		t.Errorf("%v caBundle repair(s) counted on a configuration with no webhooks, want 0", got)
	}
	if n, msg := events("CABundleRepaired"); n != 0 {
		t.Errorf("%d CABundleRepaired event(s) on a configuration with no webhooks (last %q)", n, msg)
	}
	if n := logs.count("keeps being changed"); n != 0 {
		t.Errorf("%d log line(s) say the caBundle keeps being changed", n)
	}
	// Said once, by a log line and an Event.
	if n := logs.count(noWebhooks); n != 1 {
		t.Errorf("%d log line(s) say the configuration has no webhooks, want 1", n)
	}
	// The pod is ready (/readyz: it serves); /readyz/<name> says why the
	// webhook is not ready in full.
	waitFor(t, 30*time.Second, "/readyz (the pod serves) with a configuration with no webhooks", func() error {
		return h.serving(time.Now())
	})
	waitFor(t, 30*time.Second, "/readyz/<name> saying the configuration has no webhooks", func() error {
		if err := h.ready(time.Now()); err == nil || !strings.Contains(err.Error(), noWebhooks) {
			return fmt.Errorf("ready() = %v", err)
		}
		return nil
	})
	// A root rotation does not wait for a configuration nobody uses.
	check, err := TrustCheck(env.Config, opts, []Registration{w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, tc.ca.Active()); err != nil {
		t.Errorf("TrustCheck on a configuration with no webhooks: %v", err)
	}
	waitFor(t, 30*time.Second, "an Event saying the configuration has no webhooks", func() error {
		if n, msg := events("NoWebhooks"); n == 0 || !strings.Contains(msg, noWebhooks) {
			return fmt.Errorf("%d NoWebhooks event(s), last %q", n, msg)
		}
		return nil
	})
	if n, _ := events("NoWebhooks"); n != 1 {
		t.Errorf("%d NoWebhooks event(s), want 1", n)
	}

	// An upgrade puts the webhooks back (the chart renders no caBundle):
	// they get it at once, watch-driven.
	cfg := tc.config(t)
	cfg.Webhooks = NewValidating(tc.registration().Validating, Endpoint{URLHost: "127.0.0.1", Port: port}, fsmnames.ValidatorPath, nil).Webhooks
	wt, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx,
		metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", tc.configName()).String(), ResourceVersion: cfg.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer wt.Stop()
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	good := mustBundle(t, tc)
	timeout := time.After(settleWithin) // bounds a hang only
	for patched := false; !patched; {
		select {
		case ev := <-wt.ResultChan():
			if c, ok := ev.Object.(*admv1.ValidatingWebhookConfiguration); ok && ev.Type == watch.Modified &&
				len(c.Webhooks) == 1 && bytes.Equal(c.Webhooks[0].ClientConfig.CABundle, good) {
				patched = true
			}
		case <-timeout:
			t.Fatalf("the caBundle of the webhook added by the upgrade not patched within %s", settleWithin)
		}
	}
	t.Logf("caBundle of the added webhook patched in %s", time.Since(added))
	s.waitReady(t)
	tc.waitAdmitting(t)
}
