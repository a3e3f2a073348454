package injector

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestShutdownWriteInFlightNotLost: when the manager stops, controller-runtime
// cancels the context of the reconciles under way (the writer's workers and
// runPending are in the same runnable group, cancelled at once). A record a
// worker took before the flush closed the store is the worker's alone: its
// write must still land, as the flush's writes do (context.WithoutCancel,
// flushTimeout), or the stored pod is left without its Secret (only another
// replica's repair, if any is left, would write it).
func TestShutdownWriteInFlightNotLost(t *testing.T) {
	const id = "u-shutdown"
	mut, base := storedInjectedPod(t, id)
	// The API client as client-go behaves: a request whose context is done
	// fails without being sent.
	cl := interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return c.Create(ctx, o, opts...)
		},
	})
	pending := NewPendingSecrets(0)
	issuer := &blockingIssuer{entered: make(chan struct{}), release: make(chan struct{})}
	h, err := NewHandler(Options{Client: cl, Namespaces: base, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
	if err != nil {
		t.Fatal(err)
	}
	pending.add("app", id, mut, nil)
	w := &secretWriter{cache: base, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}

	// The manager's context: the reconcile's and runPending's.
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.Reconcile(mctx, reconcile.Request{NamespacedName: key})
		done <- err
	}()
	<-issuer.entered // the worker took the record and is issuing its certificate
	stop()           // SIGTERM: the manager stops
	if err := w.runPending(mctx); err != nil {
		t.Fatal(err)
	}
	close(issuer.release)
	if err := <-done; err != nil {
		t.Logf("reconcile: %v", err)
	}
	if err := base.Get(context.Background(), key, &corev1.Secret{}); err != nil {
		t.Fatalf("the stored pod's bootstrap Secret was never written (record taken by a worker whose context the shutdown cancelled): %v", err)
	}
}
