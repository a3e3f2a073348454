package injector_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestFinishedPodSecretKeptWhileAnotherPodMountsIt: the Secret of a finished
// pod goes (its containers never start again), but not while a pod that has
// not finished mounts it too: a copy made while the pod ran (`kubectl debug
// --copy-to` drops the labels; a copy not re-injected keeps the source's
// bootstrap volume) or a pod whose uuid label was edited. The cleanup found
// the Secret's pods by the uuid label only and deleted it under the running
// copy. A copy that has finished too holds nothing back. Once the running
// copy goes (or finishes), the Secret goes within a few grace periods.
// Through the real apiserver.
func TestFinishedPodSecretKeptWhileAnotherPodMountsIt(t *testing.T) {
	const ns, grace = "finished-mount", 2 * time.Second
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	setPhase := func(p *corev1.Pod, phase corev1.PodPhase) {
		t.Helper()
		p.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, p); err != nil {
			t.Fatalf("setting pod %s to %s: %v", p.Name, phase, err)
		}
	}
	create := func(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
		t.Helper()
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		setPhase(p, phase)
		return p
	}
	// Each Secret's own pod has finished.
	for _, id := range []string{"copy-runs", "edited-runs", "copy-failed", "alone"} {
		if err := env.Client.Create(ctx, relabelSecret(ns, id)); err != nil {
			t.Fatal(err)
		}
		create(relabelMountingPod("pod-"+id, ns, id), corev1.PodSucceeded)
	}
	unlabelledCopy := func(name, id string) *corev1.Pod {
		p := relabelMountingPod(name, ns, id)
		p.Labels = map[string]string{"app": "web"}
		return p
	}
	runningCopy := create(unlabelledCopy("debug-copy", "copy-runs"), corev1.PodRunning)
	edited := relabelMountingPod("edited", ns, "edited-runs")
	edited.Labels[injector.ProxyUUIDLabel] = "edited-value"
	edited = create(edited, corev1.PodRunning)
	create(unlabelledCopy("failed-copy", "copy-failed"), corev1.PodFailed)

	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)

	key := func(id string) client.ObjectKey {
		return client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}
	}
	gone := func(id string) func() (bool, error) {
		return func() (bool, error) {
			err := env.Client.Get(ctx, key(id), &corev1.Secret{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		}
	}
	// The controller acts on finished pods: these two go.
	eventually(t, 30*time.Second, "the Secret of a finished pod nobody else mounts to go", gone("alone"))
	eventually(t, 30*time.Second, "the Secret of a finished pod whose copy finished too to go", gone("copy-failed"))
	time.Sleep(grace + time.Second)
	for id, p := range map[string]*corev1.Pod{"copy-runs": runningCopy, "edited-runs": edited} {
		if err := env.Client.Get(ctx, key(id), &corev1.Secret{}); err != nil {
			t.Errorf("bootstrap Secret %s of a finished pod, mounted by running pod %s: %v; want it kept while %s runs", key(id).Name, p.Name, err, p.Name)
		}
	}
	if t.Failed() {
		return
	}

	// The copy goes, the edited pod finishes: nothing needs the Secrets.
	if err := env.Client.Delete(ctx, runningCopy, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	setPhase(edited, corev1.PodSucceeded)
	eventually(t, 5*grace+5*time.Second, "the Secret the deleted copy mounted to go", gone("copy-runs"))
	eventually(t, 5*grace+5*time.Second, "the Secret the finished edited pod mounted to go", gone("edited-runs"))
}
