package webhooks

import (
	"context"
	"crypto/x509"
	"slices"
	"strconv"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
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
	cfgWatch, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", tc.configName()).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cfgWatch.Stop()

	newOpts := tc.options()
	newOpts.Issuer = certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	oldRoot, newRoot := tc.ca.Active(), newOpts.Issuer.(*certstest.CA).Active()
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
	// Only a running replica keeps the root it replaced: a cert the first
	// one moved before it stopped leaves the second nothing to keep.
	firstMoved := certs.ChainsTo(tc.secret(t).Data[servingcert.KeyCert], newRoot, time.Now()) == nil
	start(t, newOpts, tc.webhook(freePort(t)))
	// Long enough for each replica's hold of the other's cert to end once.
	beside := 2*foreignCertHold*opts.SettleDelay + 5*time.Second
	modified := 0
	// Once a replica has moved the cert to its root, the caBundle holds
	// both roots until the old replica stops: the mover keeps the root it
	// replaced (replacedRootKeep) longer than the other side holds its
	// cert. Versions are compared as etcd revisions, so that an event one
	// watch delivers late is placed where it happened.
	var movedAt int64
	var bundles []*admv1.ValidatingWebhookConfiguration
	deadline := time.After(beside)
count:
	for {
		select {
		case ev := <-secWatch.ResultChan():
			sec, ok := ev.Object.(*corev1.Secret)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			modified++
			if movedAt == 0 && certs.ChainsTo(sec.Data[servingcert.KeyCert], newRoot, time.Now()) == nil {
				movedAt = revision(t, sec)
			}
		case ev := <-cfgWatch.ResultChan():
			if cfg, ok := ev.Object.(*admv1.ValidatingWebhookConfiguration); ok && ev.Type == watch.Modified {
				bundles = append(bundles, cfg)
			}
		case <-deadline:
			break count
		}
	}
	l.Finish(t)
	if movedAt == 0 {
		t.Error("no replica moved the serving cert to the new root while both ran")
	}
	if firstMoved {
		t.Log("the first new replica moved the serving cert before it stopped")
	}
	for _, cfg := range bundles {
		if firstMoved || movedAt == 0 || revision(t, cfg) < movedAt {
			continue
		}
		cas, err := certs.ParseCertsPEM(cfg.Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			t.Fatal(err)
		}
		if !holds(cas, oldRoot) || !holds(cas, newRoot) {
			t.Errorf("the caBundle at revision %s, after the serving cert moved to the new root at %d while both roots were in use: %s, want both roots",
				cfg.ResourceVersion, movedAt, describeBundle(cfg.Webhooks[0].ClientConfig.CABundle))
		}
	}
	// Each replica replaces the other's cert at most once per hold (and a
	// conflict's retry may land a second write): a storm is hundreds.
	if limit := 2 * 2 * int(beside/(foreignCertHold*opts.SettleDelay)); modified > limit {
		t.Errorf("the serving-cert Secret was rewritten %d times in %s by two replicas trusting different roots, want at most %d", modified, beside, limit)
	}
	t.Logf("serving-cert Secret rewritten %d times in %s", modified, beside)

	// The rollout ends: the new replica alone moves the cert to its root
	// and, once it has kept the old root for replacedRootKeep, the caBundle
	// to that root only.
	old.stop(t)
	waitFor(t, settleWithin+(foreignCertHold+replacedRootKeep)*opts.SettleDelay, "the serving cert and the caBundle on the new root alone", func() error {
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

// revision is obj's resourceVersion as the etcd revision it is (the test
// apiserver's storage), to order events of two watches.
func revision(t *testing.T, obj metav1.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", obj.GetResourceVersion(), err)
	}
	return n
}

func holds(cas []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(cas, c.Equal)
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
		{"past the hold: replaced now", servingcert.ReasonUntrusted, false, true, seen.Add(hold + 5*time.Second), 0},
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

// testMixedTrustReplacedRootKept: a replica that moves the shared serving
// cert to its root keeps the root of the cert it replaced in the caBundle
// for replacedRootKeep, because the other side of a rolling update that
// changes the mesh CA may still write a cert of that root: a replica of a
// release without the hold (foreignCertHold) writes one as soon as it sees
// the replacement, its caBundle having settled. Dropped at once, that cert
// was served under a caBundle without its root. The root then leaves the
// caBundle, one keep after this replica last replaced a cert of it.
func testMixedTrustReplacedRootKept(t *testing.T) {
	tc := newCase(t, "replacedroot", true)
	ctx := context.Background()
	port := freePort(t)
	opts := tc.options()
	// The release being replaced stored the serving cert, of the old root,
	// and created the configuration, whose url: points at port.
	old := start(t, opts, tc.webhook(port))
	old.waitReady(t)
	old.stop(t)
	oldRoot := tc.ca.Active()
	spec := tc.webhook(port).ServingSpec(opts)

	newOpts := tc.options()
	newCA := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	newOpts.Issuer = newCA
	newRoot := newCA.Active()
	start(t, newOpts, tc.webhook(port))
	tc.waitAdmitting(t)
	l := tc.startLoop()

	onNewRoot := func() error {
		if err := certs.ChainsTo(tc.secret(t).Data[servingcert.KeyCert], newRoot, time.Now()); err != nil {
			return errTest("the serving cert is not of the new root yet: " + err.Error())
		}
		return nil
	}
	// The new replica replaces the old root's cert once its hold ends.
	hold := foreignCertHold * opts.SettleDelay
	waitFor(t, settleWithin+hold, "the new replica to move the serving cert to its root", onNewRoot)

	// A replica of the release without the hold, trusting the old root,
	// writes a cert of it back as soon as it sees that one: here within
	// SettleDelay. What it does is Store.Ensure with its trust.
	time.Sleep(opts.SettleDelay / 2)
	bundle := tc.config(t).Webhooks[0].ClientConfig.CABundle
	oldTrust, err := tc.ca.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := &servingcert.Store{Client: tc.cs, Issuer: tc.ca, Log: tc.log()}
	out, err := store.Ensure(ctx, spec, oldTrust)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certs.ParseCertsPEM(out.Secret.Data[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	if !out.Written || chain[0].CheckSignatureFrom(oldRoot) != nil {
		t.Fatalf("the old release's replica did not write a cert of the old root (written %t, issuer %q)", out.Written, chain[0].Issuer.CommonName)
	}
	if err := servingcert.Verifies(bundle, chain, spec.ServerName(), time.Now()); err != nil {
		t.Errorf("the caBundle in the API (%s) when the old release's replica stored a cert of the old root %s after the new replica had replaced one: the apiserver's calls fail TLS: %v",
			describeBundle(bundle), opts.SettleDelay/2, err)
	}

	// The new replica holds that cert, then replaces it, and the old root
	// leaves the caBundle one keep later: not before.
	var replacedAt time.Time
	waitFor(t, settleWithin+hold, "the new replica to move the serving cert to its root again", func() error {
		replacedAt = time.Now()
		return onNewRoot()
	})
	keep := replacedRootKeep * opts.SettleDelay
	waitFor(t, settleWithin+keep, "the caBundle on the new root alone", func() error {
		cas, err := certs.ParseCertsPEM(tc.config(t).Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			return err
		}
		if len(cas) != 1 || !cas[0].Equal(newRoot) {
			return errTest("the caBundle holds " + strconv.Itoa(len(cas)) + " CA(s), want the new root alone")
		}
		return nil
	})
	// replacedAt is when this test saw the write, a poll and a read after
	// it: half the keep is margin enough on a starved machine, and a root
	// dropped at once leaves within milliseconds.
	if kept := time.Since(replacedAt); kept < keep/2 {
		t.Errorf("the old root left the caBundle %s after the new replica replaced its last cert, want %s", kept.Round(time.Millisecond), keep)
	}
	l.Finish(t)
}

// TestReplacedRoots: the roots kept after a write are those that issued the
// cert it replaced and the cert served until then, never a ca.crt that
// verifies neither (edited by hand), and each leaves on time.
func TestReplacedRoots(t *testing.T) {
	ctx := context.Background()
	oldCA := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	servedCA := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	other := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	spec := servingcert.Spec{Namespace: "fsm-system", SecretName: "cert", ServiceName: "fsm-validator"}
	data := func(ca *certstest.CA, caCrt *x509.Certificate) map[string][]byte {
		c, err := ca.Issue(ctx, spec.Request())
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{servingcert.KeyCA: certs.EncodeCertsPEM(caCrt), servingcert.KeyCert: c.CertPEM, servingcert.KeyKey: c.KeyPEM}
	}
	loaded := func(d map[string][]byte) *servingcert.Loaded {
		l, err := servingcert.Parse(&corev1.Secret{Data: d})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	now := time.Now()
	for _, c := range []struct {
		name     string
		replaced map[string][]byte
		served   *servingcert.Loaded
		want     []*x509.Certificate
	}{
		{"the replaced cert's root and the served cert's", data(oldCA, oldCA.Active()), loaded(data(servedCA, servedCA.Active())), []*x509.Certificate{oldCA.Active(), servedCA.Active()}},
		{"created: the served cert's root only", nil, loaded(data(servedCA, servedCA.Active())), []*x509.Certificate{servedCA.Active()}},
		{"nothing served yet", data(oldCA, oldCA.Active()), nil, []*x509.Certificate{oldCA.Active()}},
		{"a ca.crt edited to a root that did not issue the cert is not kept", data(oldCA, other.Active()), nil, nil},
		{"an unparsable replaced cert gives nothing", map[string][]byte{servingcert.KeyCA: certs.EncodeCertsPEM(oldCA.Active()), servingcert.KeyCert: []byte("junk")}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := replacedRoots(c.replaced, c.served, now)
			if len(got) != len(c.want) {
				t.Fatalf("replacedRoots kept %d root(s), want %d", len(got), len(c.want))
			}
			for _, w := range c.want {
				if !holds(got, w) {
					t.Errorf("replacedRoots did not keep %s", w.Subject.CommonName)
				}
			}
		})
	}

	var k keptRoots
	k.keep([]*x509.Certificate{oldCA.Active()}, now.Add(10*time.Second))
	k.keep([]*x509.Certificate{servedCA.Active()}, now.Add(20*time.Second))
	k.keep([]*x509.Certificate{oldCA.Active()}, now.Add(5*time.Second)) // an earlier end does not shorten it
	for _, c := range []struct {
		at   time.Duration
		want []*x509.Certificate
		next time.Duration
	}{
		{0, []*x509.Certificate{oldCA.Active(), servedCA.Active()}, 10 * time.Second},
		{15 * time.Second, []*x509.Certificate{servedCA.Active()}, 5 * time.Second},
		{20 * time.Second, nil, 0},
	} {
		b, next := k.at(now.Add(c.at))
		var got []*x509.Certificate
		if b != nil {
			var err error
			if got, err = certs.ParseCertsPEM(b); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != len(c.want) || next != c.next {
			t.Errorf("at +%s: %d root(s) kept, next change in %s; want %d, %s", c.at, len(got), next, len(c.want), c.next)
		}
		for _, w := range c.want {
			if !holds(got, w) {
				t.Errorf("at +%s: %s not kept", c.at, w.Subject.CommonName)
			}
		}
	}
}
