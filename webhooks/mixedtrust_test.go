package webhooks

import (
	"context"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// testMixedTrustRollout: a rolling update that changes the mesh CA (a
// certificate provider switch, tresor's CA Secret renamed, the cert-manager
// issuer changed, or the helm rollback of any of them) runs old replicas,
// trusting only the old root, beside new ones trusting only the new root, on
// one serving-cert Secret. Each finds the other's serving cert untrusted and
// replaces it. Admission must keep working throughout, and the Secret must
// not be rewritten in a storm (each write a key and certificate signed and
// delivered to every replica's watch) until the old replicas stop.
func testMixedTrustRollout(t *testing.T) {
	tc := newCase(t, "mixedtrust", true)
	ctx := context.Background()
	opts := tc.options()
	old := start(t, opts, tc.webhook(freePort(t)))
	old.waitReady(t)
	tc.waitAdmitting(t)

	secWatch, err := tc.cs.CoreV1().Secrets(tc.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", fsmnames.ValidatorCertSecret).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer secWatch.Stop()

	newOpts := tc.options()
	newOpts.Issuer = certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	l := tc.startLoop()
	// The first new replica and the old one revert each other's caBundle
	// until both back off for many seconds; the rollout then replaces the
	// first new replica by another new one, whose back-off starts from
	// nothing: its caBundle (both roots) now stands long enough for it to
	// move the serving cert to the new root while the old replica still
	// runs.
	first := start(t, newOpts, tc.webhook(freePort(t)))
	time.Sleep(10 * time.Second)
	first.stop(t)
	start(t, newOpts, tc.webhook(freePort(t)))
	// Long enough for each replica's hold of the other's cert to end once.
	beside := 2*foreignCertHold*opts.SettleDelay + 5*time.Second
	modified := 0
	deadline := time.After(beside)
count:
	for {
		select {
		case ev := <-secWatch.ResultChan():
			if ev.Type == watch.Modified {
				modified++
			}
		case <-deadline:
			break count
		}
	}
	l.Finish(t)
	// Each replica replaces the other's cert at most once per hold (and a
	// conflict's retry may land a second write): a storm is hundreds.
	if limit := 2 * 2 * int(beside/(foreignCertHold*opts.SettleDelay)); modified > limit {
		t.Errorf("the serving-cert Secret was rewritten %d times in %s by two replicas trusting different roots, want at most %d", modified, beside, limit)
	}
	t.Logf("serving-cert Secret rewritten %d times in %s", modified, beside)

	// The rollout ends: the new replica alone moves the cert to its root
	// and the caBundle to that root only.
	old.stop(t)
	newRoot := newOpts.Issuer.(*certstest.CA).Active()
	waitFor(t, settleWithin+foreignCertHold*opts.SettleDelay, "the serving cert and the caBundle on the new root alone", func() error {
		chain, err := certs.ParseCertsPEM(tc.secret(t).Data[servingcert.KeyCert])
		if err != nil {
			return err
		}
		if err := chain[0].CheckSignatureFrom(newRoot); err != nil {
			return errTest("the serving cert is not of the new root yet: " + err.Error())
		}
		cas, err := certs.ParseCertsPEM(tc.config(t).Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			return err
		}
		if len(cas) != 1 || !cas[0].Equal(newRoot) {
			return errTest("the caBundle holds " + strconv.Itoa(len(cas)) + " CA(s), want the new root alone")
		}
		return nil
	})
}

func TestHoldForeign(t *testing.T) {
	seen := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	const hold = 30 * time.Second
	for _, c := range []struct {
		name        string
		reason      servingcert.Reason
		own         bool
		apiVerifies bool
		now         time.Time
		want        time.Duration
	}{
		{"another replica's cert of a root this one does not trust, which the apiserver does", servingcert.ReasonUntrusted, false, true, seen.Add(10 * time.Second), 20 * time.Second},
		{"held no longer than the hold", servingcert.ReasonUntrusted, false, true, seen.Add(hold), 0},
		{"its own cert is replaced at once (its CA changed)", servingcert.ReasonUntrusted, true, true, seen, 0},
		{"a cert the caBundle does not verify is never held", servingcert.ReasonUntrusted, false, false, seen, 0},
		{"an expiring cert is renewed at once", servingcert.ReasonExpiring, false, true, seen, 0},
		{"changed names are re-issued at once", servingcert.ReasonNames, false, true, seen, 0},
		{"a broken ca.crt is repaired at once", servingcert.ReasonInvalid, false, true, seen, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := holdForeign(c.reason, c.own, c.apiVerifies, seen, hold, c.now); got != c.want {
				t.Errorf("holdForeign(%s, own %t, apiVerifies %t) = %s, want %s", c.reason, c.own, c.apiVerifies, got, c.want)
			}
		})
	}
}
