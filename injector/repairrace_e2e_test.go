package injector_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// heldSecretCreates holds every Secret create whose context has not already
// run out (an admission's create with a 1 ns budget passes, and fails at
// once) until release is closed: a writer slower than another replica's
// repair.
type heldSecretCreates struct {
	client.Client
	held    chan struct{}
	release chan struct{}
}

func (c *heldSecretCreates) Create(ctx context.Context, o client.Object, opts ...client.CreateOption) error {
	if _, ok := o.(*corev1.Secret); ok && ctx.Err() == nil {
		select {
		case c.held <- struct{}{}:
		default:
		}
		select {
		case <-c.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.Client.Create(ctx, o, opts...)
}

// testRepairBeatsLateOwnerWrite, through the real apiserver: the admitting
// replica hands the Secret off (built, its certificate signed) and its
// writer's create is held; another replica's repair rebuilds the Secret from
// the stored pod first. The repair's create wins and is the one Secret, a
// whole one for the pod's uuid; the owner's create, released, answers
// AlreadyExists and is not a write: the Secret is counted once
// (written{repair}), the owner's discarded certificate under
// found_written{controller}. Two certificates were signed (the admission's
// and the repair's): the repair cannot know of a record in another process.
func (e *e2e) testRepairBeatsLateOwnerWrite(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	const mesh = "repair-race"
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	held := &heldSecretCreates{Client: e.cl, held: make(chan struct{}, 1), release: make(chan struct{})}
	releaseOnce := func() {
		select {
		case <-held.release:
		default:
			close(held.release)
		}
	}
	t.Cleanup(releaseOnce)
	// Every replica runs the same repair delay (serve: DefaultRepairDelay).
	const repairDelay = 500 * time.Millisecond
	pending := injector.NewPendingSecrets(0)
	owner := e.writerReplica(t, ca, mesh, replicaWriter{pending: pending, writer: injector.SecretWriterAdmission,
		handoff: injector.SecretHandoff{InFlight: 16, Budget: time.Nanosecond}, repairDelay: repairDelay, client: held})
	ns := e.serveMesh(ctx, t, servingCA, mesh, mesh, owner)
	// The other replica: it admits nothing here, and repairs.
	e.writerReplica(t, ca, mesh, replicaWriter{repairDelay: repairDelay})

	found := func() float64 {
		n, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secrets_found_written_total", map[string]string{"writer": "controller"})
		return n
	}
	byAdmission, byController, byRepair, foundBefore, issued := writtenTotal(t, "admission"), writtenTotal(t, "controller"), writtenTotal(t, "repair"), found(), ca.Issued()
	p := pod("late-owner", ns.Name)
	p.Spec.ServiceAccountName = "default"
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the owner's writer never created the handed-off Secret")
	}
	repaired := e.waitBootstrapSecret(ctx, t, p)
	checkBootstrapSecret(ctx, t, ca, mesh, p, repaired)
	eventually(t, settleWithin, "written{writer=repair} to go up by 1", func() (bool, error) {
		return writtenTotal(t, "repair")-byRepair == 1, nil
	})
	releaseOnce()
	// The owner's create answers; its outcome is counted, as a write
	// (wrong) or as found written.
	eventually(t, settleWithin, "the owner's create to be counted", func() (bool, error) {
		return writtenTotal(t, "admission")-byAdmission+writtenTotal(t, "controller")-byController+found()-foundBefore >= 1, nil
	})
	if d := writtenTotal(t, "admission") - byAdmission; d != 0 {
		t.Errorf("written{writer=admission} rose by %v: the repair's Secret counted a second time", d)
	}
	if d := found() - foundBefore; d != 1 {
		t.Errorf("found_written{writer=controller} rose by %v, want 1", d)
	}
	if n := pending.Len(); n != 0 {
		t.Errorf("%d record(s) left", n)
	}
	if d := writtenTotal(t, "controller") - byController; d != 0 {
		t.Errorf("written{writer=controller} rose by %v", d)
	}
	if d := writtenTotal(t, "repair") - byRepair; d != 1 {
		t.Errorf("written{writer=repair} rose by %v, want 1", d)
	}
	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, bootstrapSecretKey(p), s); err != nil {
		t.Fatal(err)
	}
	if s.UID != repaired.UID || s.ResourceVersion != repaired.ResourceVersion {
		t.Errorf("the repair's Secret was replaced or changed: uid %s rv %s, was %s %s", s.UID, s.ResourceVersion, repaired.UID, repaired.ResourceVersion)
	}
	checkBootstrapSecret(ctx, t, ca, mesh, p, s)
	if n := len(bootstrapSecrets(t, ctx, e.cl, ns.Name)); n != 1 {
		t.Errorf("%d bootstrap Secrets for one pod, want 1", n)
	}
	if d := ca.Issued() - issued; d != 2 {
		t.Errorf("%d certificates signed, want 2 (the admission's, discarded, and the repair's)", d)
	}
}
