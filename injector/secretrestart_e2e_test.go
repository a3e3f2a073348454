package injector_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestSecretOfPodDeletedWhileDown: a pod deleted while no controller runs
// sends no event anyone sees; the next controller to start reconciles every
// Secret, finds no pod for that one (its grace period long over) and deletes
// it, while the Secret of a running pod stays. Through the real apiserver,
// with no garbage collector.
func TestSecretOfPodDeletedWhileDown(t *testing.T) {
	const ns, grace = "restart", 2 * time.Second
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	pods := map[string]*corev1.Pod{}
	for _, id := range []string{"kept", "gone"} {
		// What the injector leaves: the Secret, then the pod labelled with
		// its uuid.
		if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: injector.BootstrapSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, injector.ProxyUUIDLabel: id},
		}}); err != nil {
			t.Fatal(err)
		}
		p := pod(id, ns)
		p.Labels = map[string]string{injector.ProxyUUIDLabel: id}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		pods[id] = p
	}
	exists := func(id string) bool {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}, &corev1.Secret{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	run := func(d time.Duration, until func() bool) {
		t.Helper()
		mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: log})
		mctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) && (until == nil || !until()) {
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("manager: %v", err)
		}
	}

	// First life: past the grace period, both pods exist, both Secrets stay.
	run(grace+2*time.Second, nil)
	if !exists("kept") || !exists("gone") {
		t.Fatalf("a Secret of a running pod was deleted (kept %v, gone %v)", exists("kept"), exists("gone"))
	}
	// Down: the pod goes (unscheduled, so at once) and nobody sees it.
	if err := env.Client.Delete(ctx, pods["gone"], client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if !exists("gone") {
		t.Fatal("the Secret went with no controller running (a garbage collector?)")
	}
	before := deletedTotal(t, injector.ReasonNoPod)
	// Second life: the start's reconcile of every Secret sweeps it.
	start := time.Now()
	// Until the delete is also counted: the reconciler counts it once its
	// call returns, which may be after the test saw the Secret gone, and
	// stopping the manager then would cancel that call.
	// A liveness bound: the new manager lists, syncs and reconciles every
	// Secret, which a loaded CI machine can hold up for seconds.
	run(30*time.Second, func() bool { return !exists("gone") && deletedTotal(t, injector.ReasonNoPod)-before >= 1 })
	if exists("gone") {
		t.Fatal("the Secret of the pod deleted while down is still there 30 s after the restart")
	}
	t.Logf("Secret of the pod deleted while down swept %s after the restart", time.Since(start).Round(10*time.Millisecond))
	if !exists("kept") {
		t.Error("the Secret of the running pod was deleted")
	}
	if d := deletedTotal(t, injector.ReasonNoPod) - before; d != 1 {
		t.Errorf("fsm_webhooks_injector_orphan_secrets_deleted_total{reason=%q} went up by %v, want 1", injector.ReasonNoPod, d)
	}
}
