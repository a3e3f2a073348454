package main

import (
	"context"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestServeAutoRotationRefusesAClockAhead: serve's automatic root rotation
// signs the new root with its node's clock, valid from certs.ClockSkew (5
// min) before that clock's now. On a node whose clock ran 8 minutes ahead it
// added a root valid only 3 minutes later in the cluster, activated it once the
// caBundles held it and re-issued the serving certificates from it: the
// apiserver refused every webhook call (pod creates in meshed namespaces)
// until its own clock caught up, as `certs rotate-root` did from such a
// machine before it checked (TestRotateRootRefusesAClockAhead). serve now
// checks its clock against the apiserver's before a rotation step and
// leaves the rotation alone (retrying) while it is ahead; once the clock is
// in step the rotation starts.
func TestServeAutoRotationRefusesAClockAhead(t *testing.T) {
	const ns = "autoskew-system"
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A root of ours created two hours ago: with --root-auto-rotate-before
	// an hour short of a root's lifetime, serve rotates it at once.
	created := &tresor.Store{Client: env.Clientset, Namespace: ns, Name: "fsm-ca-bundle", RootKeyAlgorithm: certs.ECDSAP256,
		Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
	if _, err := created.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	store := &tresor.Store{Client: env.Clientset, Namespace: ns, Name: "fsm-ca-bundle"}

	// The node's clock, 8 minutes ahead; read atomically, so the test can
	// put it in step while serve runs. Restored after serve has stopped
	// (cleanups run last registered first).
	var ahead atomic.Int64
	ahead.Store(int64(8 * time.Minute))
	localClock = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	t.Cleanup(func() { localClock = time.Now })

	_, done := serveHooks(ctx, t, env.Config, ns, []string{hookValidator}, func(o *options, _ *serveFlags) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = certs.RootCAValidity - time.Hour
	})
	// serve has started once it wrote the validator's serving cert; the
	// rotation starts beside the listeners, and before the fix had added
	// the next root within a second.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, fsmnames.ValidatorCertSecret, metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve wrote no validator serving cert in 60 s")
		}
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		st, err := store.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rotation.Phase == tresor.PhaseNone {
			continue
		}
		now := time.Now()
		if next := newRoot(st.Rotation); next != nil && next.NotBefore.After(now) {
			t.Fatalf("serve on a node 8 min ahead started a rotation (phase %s) with a root not valid in the cluster before %s (now %s)",
				st.Rotation.Phase, next.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		t.Fatalf("serve on a node 8 min ahead started a rotation (phase %s); want it refused while the clock is ahead", st.Rotation.Phase)
	}

	// In step again: the next attempt (10 s after the refused one) rotates.
	ahead.Store(0)
	deadline = time.Now().Add(60 * time.Second)
	for {
		st, err := store.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rotation.Phase != tresor.PhaseNone {
			if next := newRoot(st.Rotation); next != nil && next.NotBefore.After(time.Now()) {
				t.Fatalf("next root not valid before %s", next.NotBefore.UTC().Format(time.RFC3339))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start the rotation within 60 s of its clock coming back in step")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newRoot is the root a rotation in progress brings in: the next one, or
// once active the signing one.
func newRoot(r tresor.RotationStatus) *x509.Certificate {
	if r.Phase == tresor.PhaseNextRootAdded {
		return r.Next
	}
	return r.Active
}
