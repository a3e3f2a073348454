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
// fsm-proxy-uuid label is removed, or changed to a new value (kubectl label
// --overwrite), keeps its bootstrap Secret (it still mounts it). Once that
// pod is deleted, no DELETE event names the Secret (the pod left the
// label-selected watch, or its DELETE carries the new value), and nobody
// touches the Secret: it must still go within a few grace periods of the
// pod's deletion, not at a resync hours later.
func TestRelabelledPodSecretSweptAfterPodDeleted(t *testing.T) {
	for _, tc := range []struct{ name, label string }{
		{"label removed", `null`},
		{"label changed", `"edited-value"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const ns, grace, id = "relabel-sweep", 2 * time.Second, "relabel-sweep-uuid"
			env := startCoreEnv(t, ns)
			ctx := context.Background()
			secret := relabelSecret(ns, id)
			if err := env.Client.Create(ctx, secret); err != nil {
				t.Fatal(err)
			}
			secretKey := client.ObjectKeyFromObject(secret)
			p := relabelMountingPod("relabelled", ns, id)
			if err := env.Client.Create(ctx, p); err != nil {
				t.Fatal(err)
			}

			mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
			mctx, cancel := context.WithCancel(ctx)
			startManager(mctx, t, mgr, cancel)
			time.Sleep(time.Second)

			// Someone edits the running pod's uuid label: kept (correct).
			if err := env.Client.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+injector.ProxyUUIDLabel+`":`+tc.label+`}}}`))); err != nil {
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
		})
	}
}

func relabelSecret(ns, id string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: injector.BootstrapSecretName(id),
		Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, injector.ProxyUUIDLabel: id},
	}}
}

func relabelMountingPod(name, ns, id string) *corev1.Pod {
	p := pod(name, ns)
	p.Labels = map[string]string{injector.ProxyUUIDLabel: id}
	p.Spec.Volumes = []corev1.Volume{{Name: injector.BootstrapVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: injector.BootstrapSecretName(id)}}}}
	return p
}

// TestLabelEditedToAnotherUUIDKeepsSecret: a running pod whose uuid
// label was edited to the value of another pod's uuid (whose Secret exists)
// still mounts its own Secret; the sweep at start must not delete it.
func TestLabelEditedToAnotherUUIDKeepsSecret(t *testing.T) {
	const ns, grace = "relabel-other", 2 * time.Second
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	for _, id := range []string{"uuid-a", "uuid-b"} {
		if err := env.Client.Create(ctx, relabelSecret(ns, id)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := relabelMountingPod("a", ns, "uuid-a"), relabelMountingPod("b", ns, "uuid-b")
	for _, p := range []*corev1.Pod{a, b} {
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Pod a's label is overwritten with b's uuid; a still mounts uuid-a's Secret.
	if err := env.Client.Patch(ctx, a, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+injector.ProxyUUIDLabel+`":"uuid-b"}}}`))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + time.Second) // the Secrets are past their grace period
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)
	time.Sleep(2*grace + 2*time.Second)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName("uuid-a")}, &corev1.Secret{}); err != nil {
		t.Fatalf("bootstrap Secret %s of running pod %s (which mounts it; its uuid label edited to another pod's uuid) deleted: %v", injector.BootstrapSecretName("uuid-a"), a.Name, err)
	}
}

// TestLabelEditedToAnotherUUIDThenOtherPodDeleted: pod a's uuid label is
// edited to pod b's, then b is deleted. b's Secret stays (a carries its
// uuid), so a then looks like b's only pod, and "its own Secret exists, so
// it mounts that one" was wrong for it: a's Secret, which a mounts, was
// deleted at the next recheck. What a replica learnt of a's volume while two
// pods carried uuid-b (volumes never change) keeps it.
func TestLabelEditedToAnotherUUIDThenOtherPodDeleted(t *testing.T) {
	const ns, grace = "relabel-then-delete", 2 * time.Second
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	for _, id := range []string{"uuid-a", "uuid-b"} {
		if err := env.Client.Create(ctx, relabelSecret(ns, id)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := relabelMountingPod("a", ns, "uuid-a"), relabelMountingPod("b", ns, "uuid-b")
	for _, p := range []*corev1.Pod{a, b} {
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)
	time.Sleep(time.Second)
	if err := env.Client.Patch(ctx, a, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+injector.ProxyUUIDLabel+`":"uuid-b"}}}`))); err != nil {
		t.Fatal(err)
	}
	// uuid-a's Secret is rechecked a grace period after the edit, while b
	// still runs.
	time.Sleep(2*grace + time.Second)
	if err := env.Client.Delete(ctx, b, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3*grace + time.Second)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName("uuid-a")}, &corev1.Secret{}); err != nil {
		t.Fatalf("bootstrap Secret %s of running pod %s (which mounts it; its uuid label edited to pod b's, b deleted since) deleted: %v", injector.BootstrapSecretName("uuid-a"), a.Name, err)
	}
}
