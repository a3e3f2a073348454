package injector_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestRelabelledPodSecretSweptAfterPodDeleted: a running pod whose
// fsm-proxy-uuid label was removed keeps its bootstrap Secret (it still
// mounts it). Once that pod is deleted, no DELETE event reaches the
// controller (the pod had left the label-selected watch), and nothing
// requeues the kept Secret: design.md says "it goes at the next sweep once the
// pod is gone", but there is no periodic sweep, only a restart or an
// unrelated write to the Secret (testSecretOfRelabelledPod touches the Secrets
// to get there). Here nobody touches it: the Secret should be gone well
// within a few grace periods of the pod's deletion.
func TestRelabelledPodSecretSweptAfterPodDeleted(t *testing.T) {
	const ns, grace, id = "relabel-sweep", 2 * time.Second, "relabel-sweep-uuid"
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	secretKey := client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: secretKey.Name,
		Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, injector.ProxyUUIDLabel: id},
	}}); err != nil {
		t.Fatal(err)
	}
	p := pod("relabelled", ns)
	p.Labels = map[string]string{injector.ProxyUUIDLabel: id}
	p.Spec.Volumes = []corev1.Volume{{Name: injector.BootstrapVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretKey.Name}}}}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)
	time.Sleep(time.Second)

	// Someone removes the uuid label of the running pod: kept (correct).
	if err := env.Client.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+injector.ProxyUUIDLabel+`":null}}}`))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 2*time.Second)
	if err := env.Client.Get(ctx, secretKey, &corev1.Secret{}); err != nil {
		t.Fatalf("Secret of the running relabelled pod swept: %v", err)
	}

	// The pod goes. Nothing else happens to the Secret.
	if err := env.Client.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	const wait = 5*grace + 5*time.Second
	for time.Since(deleted) < wait {
		err := env.Client.Get(ctx, secretKey, &corev1.Secret{})
		if apierrors.IsNotFound(err) {
			t.Logf("Secret swept %s after its pod was deleted", time.Since(deleted).Round(100*time.Millisecond))
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("bootstrap Secret %s still exists %s after its (relabelled) pod was deleted, grace period %s: nothing requeues a Secret kept for a pod mounting it", secretKey, wait, grace)
}
