package injector

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

// TestTrustControllerConflict: a write that loses to a concurrent one (FSM's
// controller appending the pod as owner) is re-read and re-decided: the
// owner stays, the certificate is re-issued once, nothing is counted as a
// failure. A Secret of another mesh is never listed.
func TestTrustControllerConflict(t *testing.T) {
	ctx := context.Background()
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	cn := CommonName("u1", "web", "app", "cluster.local")
	cert, err := ca.Issue(ctx, certRequest(cn, "", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	mine, err := BootstrapSecret("app", "fsm", "u1", cert, BootstrapConfig{NodeID: cn})
	if err != nil {
		t.Fatal(err)
	}
	mine.ResourceVersion = "1"
	other := mine.DeepCopy()
	other.Name, other.Labels = BootstrapSecretName("u2"), map[string]string{appNameLabel: appNameValue, appInstanceLabel: "other", ProxyUUIDLabel: "u2"}
	old := ca.Active()
	if err := ca.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ca.ActivateNextRoot(ctx); err != nil {
		t.Fatal(err)
	}

	cs := fake.NewClientset(mine, other)
	patches := 0
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	cs.PrependReactor("patch", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		if patches > 1 {
			if p := string(a.(k8stesting.PatchAction).GetPatch()); !strings.Contains(p, `"resourceVersion":"2"`) {
				t.Errorf("retry not decided on the Secret read again: %s", p)
			}
			return false, nil, nil
		}
		// FSM's controller wins the race: it appends the owner first.
		cur, err := cs.Tracker().Get(secrets, "app", mine.Name)
		if err != nil {
			t.Fatal(err)
		}
		s := cur.(*corev1.Secret).DeepCopy()
		s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "web", UID: "pod-uid"})
		s.ResourceVersion = "2"
		if err := cs.Tracker().Update(secrets, s, "app"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `"resourceVersion":"1"`) {
			t.Errorf("patch not guarded by the resourceVersion read: %s", a.(k8stesting.PatchAction).GetPatch())
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, mine.Name, nil)
	})
	c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: ca, Rotation: ca, MeshName: "fsm", Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Retiring == nil || !ts.Retiring.Equal(old) || ts.Bundle.Len() != 2 {
		t.Fatalf("trust state: retiring %v, %d roots; want the old root retiring, 2 roots", ts.Retiring, ts.Bundle.Len())
	}
	reissued, failed := testutil.ToFloat64(trustReissued), testutil.ToFloat64(trustFailures.WithLabelValues("update"))
	res, err := c.Sync(ctx, ts)
	if err != nil {
		t.Fatal(err)
	}
	if res != (SyncResult{Scanned: 1, Updated: 1, Reissued: 1}) || patches != 2 {
		t.Errorf("result %+v after %d patches, want 1 scanned, updated and re-issued after 2 patches", res, patches)
	}
	if d := testutil.ToFloat64(trustReissued) - reissued; d != 1 {
		t.Errorf("re-issued counter went up by %v", d)
	}
	if d := testutil.ToFloat64(trustFailures.WithLabelValues("update")) - failed; d != 0 {
		t.Errorf("a conflict resolved by a re-read was counted as %v failure(s)", d)
	}
	got, err := cs.CoreV1().Secrets("app").Get(ctx, mine.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "pod-uid" {
		t.Errorf("owners %+v, want the one FSM's controller appended", got.OwnerReferences)
	}
	if err := certs.ChainsTo(got.Data[RepoCertKey], ca.Active(), time.Now()); err != nil {
		t.Error(err)
	}
	if plan, err := PlanTrust(got, ts, "", time.Hour, time.Now()); err != nil || plan.Changes() {
		t.Errorf("after the pass the Secret still needs %+v (%v)", plan, err)
	}
	// The pass re-issued only this mesh's Secret; the other mesh's, signed
	// by the same root, still depends on it and holds the drop back,
	// whichever mesh name the rotation runs with.
	if err := RetiringRootCheck(cs)(ctx, old); err == nil || !strings.Contains(err.Error(), "1 of 2 bootstrap Secret(s) still hold a certificate signed by the retiring root") ||
		!strings.Contains(err.Error(), "app/"+other.Name) {
		t.Errorf("retiring root check with the other mesh's Secret signed by it: %v", err)
	}
	if err := cs.CoreV1().Secrets("app").Delete(ctx, other.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := RetiringRootCheck(cs)(ctx, old); err != nil {
		t.Errorf("retiring root check once nothing it signed is left: %v", err)
	}
}

// TestTrustControllerSettles: with nothing retiring, one pass runs at Start,
// a pass every Resync for SettleWindow after each change of the trust, then
// none while the trust stays as it is. A negative SettleWindow is
// refused.
func TestTrustControllerSettles(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{Algorithm: certs.ECDSAP256})
	if _, err := NewTrustController(TrustControllerOptions{Client: fake.NewClientset(), Issuer: ca, MeshName: "fsm", SettleWindow: -time.Second}); err == nil || !strings.Contains(err.Error(), "SettleWindow -1s") {
		t.Errorf("negative SettleWindow: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cn := CommonName("u1", "web", "app", "cluster.local")
	cert, err := ca.Issue(ctx, certRequest(cn, "", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := BootstrapSecret("app", "fsm", "u1", cert, BootstrapConfig{NodeID: cn})
	if err != nil {
		t.Fatal(err)
	}
	s.ResourceVersion = "1" // the fake sets none; writes are guarded by it
	cs := fake.NewClientset(s)
	var lists atomic.Int64 // one per pass: a single page
	cs.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	issuer := &trustReads{CA: ca}
	c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: issuer, MeshName: "fsm", Resync: 10 * time.Millisecond, SettleWindow: time.Hour, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	skew := startSkewed(t, c)
	passes := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for lists.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d pass(es), want at least %d", lists.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	quiet := func() int64 {
		t.Helper()
		// The next read decides on the clock as it is now; by the one after
		// it, a pass decided before (however starved) has listed.
		issuer.await(t, 2)
		n := lists.Load()
		issuer.await(t, 50)
		if m := lists.Load(); m != n {
			t.Fatalf("%d pass(es) in 50 re-reads of the trust after the window ended", m-n)
		}
		return n
	}

	passes(1) // the pass at start; nothing changed before it, nothing retires
	n := quiet()
	// A root added (no RotationReader: nothing retires) opens a new window.
	if err := ca.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	passes(n + 5)
	got, err := cs.CoreV1().Secrets("app").Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := certs.ParseBundle(time.Now(), got.Data[CACertKey]); err != nil || b.Len() != 2 {
		t.Errorf("%s after the change: %v, %v", CACertKey, b, err)
	}
	skew.Add(int64(2 * time.Hour))
	quiet()
}

// trustReads counts the TrustController's reads of the trust (its CABundle
// calls, one per State).
type trustReads struct {
	*certstest.CA
	reads atomic.Int64
}

// await waits until the controller has begun n more reads of the trust: a
// read begins only once the pass before it has listed.
func (r *trustReads) await(t *testing.T, n int64) {
	t.Helper()
	want := r.reads.Load() + n
	for deadline := time.Now().Add(30 * time.Second); r.reads.Load() < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the trust read %d of %d more time(s) in 30 s", n-(want-r.reads.Load()), n)
		}
	}
}

func (r *trustReads) CABundle(ctx context.Context) ([]byte, error) {
	r.reads.Add(1)
	return r.CA.CABundle(ctx)
}

// TestTrustControllerSettlesAtStart: a controller starting after a change
// the provider recorded (TrustState.Changed: tresor's phase start, written
// with the clock of whoever made the step, `certs rotate-root` included)
// re-checks every Secret every Resync until SettleWindow after that change:
// not at all for a change older than that, and never past SettleWindow from
// now for a change recorded ahead of this clock.
func TestTrustControllerSettlesAtStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changed time.Duration // from now
		settles bool
	}{
		{"changed a minute ago", -time.Minute, true},
		{"changed two windows ago", -2 * time.Hour, false},
		{"changed 1000 h ahead of this clock", 1000 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var lists atomic.Int64 // one per pass: no Secret, one page
			cs.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				lists.Add(1)
				return false, nil, nil
			})
			issuer := &trustReads{CA: certstest.MustNew(t, certstest.Options{Algorithm: certs.ECDSAP256})}
			rotation := recordedChange{rootrotation.Status{Phase: rootrotation.PhaseComplete, Since: time.Now().Add(tc.changed)}}
			c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: issuer, Rotation: rotation, MeshName: "fsm",
				Resync: 10 * time.Millisecond, SettleWindow: time.Hour, Logger: testr.New(t)})
			if err != nil {
				t.Fatal(err)
			}
			skew := startSkewed(t, c)
			reads := func(n int64) { t.Helper(); issuer.await(t, n) }
			// quiet: no pass over 20 reads decided on the clock as it is.
			quiet := func(what string) {
				t.Helper()
				reads(2)
				n := lists.Load()
				reads(20)
				if m := lists.Load(); m != n {
					t.Fatalf("%d pass(es) in 20 re-reads of the trust %s", m-n, what)
				}
			}
			reads(3) // the pass at start has listed
			if !tc.settles {
				quiet("after a change older than SettleWindow")
				return
			}
			n := lists.Load()
			reads(20)
			if m := lists.Load(); m-n < 15 {
				t.Fatalf("%d pass(es) in 20 re-reads of the trust within SettleWindow of the change, want one each", m-n)
			}
			skew.Add(int64(2 * time.Hour))
			quiet("SettleWindow past the change, or past the start")
		})
	}
}

// startSkewed runs c until the test ends, its clock moved by what the
// returned value holds (to move it past a window).
func startSkewed(t *testing.T, c *TrustController) *atomic.Int64 {
	t.Helper()
	skew := new(atomic.Int64)
	c.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	return skew
}

// recordedChange is a RotationReader that reads st.
type recordedChange struct{ st rootrotation.Status }

func (r recordedChange) RotationStatus(context.Context) (rootrotation.Status, error) {
	return r.st, nil
}

// TestTrustRetiringResync: while a root retires (the rotation's grace
// period, 24h by default) and the trust has settled, every Secret is
// re-checked every RetiringResync, not at each Resync re-read of the trust:
// a pass reads every bootstrap Secret with its keys, and at Resync that was
// 2,880 passes a replica through the grace period. A pass still runs at
// start, and again once the last clean one is RetiringResync old.
func TestTrustRetiringResync(t *testing.T) {
	cs := fake.NewClientset()
	var lists atomic.Int64 // one per pass: no Secret, one page
	cs.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	ctx := context.Background()
	ca := certstest.MustNew(t, certstest.Options{Algorithm: certs.ECDSAP256})
	if err := ca.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ca.ActivateNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	previous, _, _ := ca.Roots()
	issuer := &trustReads{CA: ca}
	// Activated three hours ago: past SettleWindow, inside the grace.
	rotation := recordedChange{rootrotation.Status{Phase: rootrotation.PhaseNextRootActive, Previous: previous, Since: time.Now().Add(-3 * time.Hour)}}
	c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: issuer, Rotation: rotation, MeshName: "fsm",
		Resync: 10 * time.Millisecond, SettleWindow: time.Minute, RetiringResync: time.Hour, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	skew := startSkewed(t, c)
	quiet := func(what string) int64 {
		t.Helper()
		issuer.await(t, 2) // a pass decided before has listed
		n := lists.Load()
		issuer.await(t, 30)
		if m := lists.Load(); m != n {
			t.Fatalf("%d pass(es) in 30 re-reads of the trust %s, want none", m-n, what)
		}
		return n
	}
	n := quiet("after the pass at start, the root retiring")
	if n != 1 {
		t.Fatalf("%d pass(es) at start, want 1", n)
	}
	skew.Add(int64(61 * time.Minute))
	if m := quiet("after the pass RetiringResync brought"); m != n+1 {
		t.Fatalf("%d pass(es) once the last clean pass was RetiringResync old, want 1", m-n)
	}
}

// TestFingerprintRetiring: activating the next root changes no root in the
// bundle, only which one retires; the controller must see that as a new
// trust state (a new settle window and a pass that re-issues), not as the
// state of its last clean pass.
func TestFingerprintRetiring(t *testing.T) {
	now := time.Now()
	oldRoot, err := certs.NewRootAuthority(certs.ECDSAP256, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.ParseBundle(now, certs.EncodeCertsPEM(oldRoot.Cert))
	if err != nil {
		t.Fatal(err)
	}
	added, active := TrustState{Bundle: bundle}, TrustState{Bundle: bundle, Retiring: oldRoot.Cert}
	if fingerprint(added) == fingerprint(active) {
		t.Error("the same fingerprint with and without a retiring root")
	}
	if fingerprint(active) != fingerprint(TrustState{Bundle: bundle, Retiring: oldRoot.Cert}) {
		t.Error("the same trust state has two fingerprints")
	}
}
