package injector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testFinishedPodSecret: through the real apiserver, a meshed pod that
// finished (phase Succeeded or Failed, set through the status subresource
// as the kubelet does) loses its bootstrap Secret while the pod object
// stays (a Job's pod without ttlSecondsAfterFinished); a Pending or Running
// pod keeps its Secret, also when the Secret is reconciled again later; and
// the writer's repair, which looks at every pod 10 s after it appears, does
// not write the finished pods' Secrets again.
func (e *e2e) testFinishedPodSecret(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "finished", true)
	pods := map[corev1.PodPhase]*corev1.Pod{}
	for _, phase := range []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed, corev1.PodRunning, corev1.PodPending} {
		p := pod("pod-"+strings.ToLower(string(phase)), ns)
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		if err := e.cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := e.cl.Get(ctx, bootstrapSecretKey(p), &corev1.Secret{}); err != nil {
			t.Fatalf("Secret of injected pod %s: %v", p.Name, err)
		}
		pods[phase] = p
	}
	created := time.Now()
	repairsBefore := writtenTotal(t, "repair")
	deletedBefore := deletedTotal(t, injector.ReasonPodFinished)
	for _, phase := range []corev1.PodPhase{corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed} {
		p := pods[phase]
		p.Status.Phase = phase
		if err := e.cl.Status().Update(ctx, p); err != nil {
			t.Fatalf("setting pod %s to %s: %v", p.Name, phase, err)
		}
	}
	for _, phase := range []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed} {
		p := pods[phase]
		eventually(t, settleWithin, "the Secret of "+string(phase)+" pod "+p.Name+" to go", func() (bool, error) {
			err := e.cl.Get(ctx, bootstrapSecretKey(p), &corev1.Secret{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
	}
	var d float64
	eventually(t, settleWithin, "both deletes to be counted", func() (bool, error) {
		d = deletedTotal(t, injector.ReasonPodFinished) - deletedBefore
		return d >= 2, nil
	})
	if d != 2 {
		t.Errorf("fsm_webhooks_injector_orphan_secrets_deleted_total{reason=%q} went up by %v, want 2", injector.ReasonPodFinished, d)
	}

	// A change to the live pods' Secrets reconciles them again, with their
	// phases known to the controller by now.
	for _, phase := range []corev1.PodPhase{corev1.PodRunning, corev1.PodPending} {
		s := &corev1.Secret{}
		if err := e.cl.Get(ctx, bootstrapSecretKey(pods[phase]), s); err != nil {
			t.Fatalf("Secret of %s pod %s: %v", phase, pods[phase].Name, err)
		}
		s.Annotations = map[string]string{"e2e.flomesh.io/touched": "yes"}
		if err := e.cl.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Past the writer's repair of these pods (queued 10 s after each was
	// seen) and past the cleanup's grace period.
	time.Sleep(time.Until(created.Add(injector.DefaultRepairDelay + orphanGrace + 2*time.Second)))
	for phase, p := range pods {
		err := e.cl.Get(ctx, bootstrapSecretKey(p), &corev1.Secret{})
		switch {
		case injectorFinished(phase) && !apierrors.IsNotFound(err):
			t.Errorf("Secret of %s pod %s: %v, want NotFound (written again?)", phase, p.Name, err)
		case !injectorFinished(phase) && err != nil:
			t.Errorf("Secret of %s pod %s: %v, want kept", phase, p.Name, err)
		}
		if err := e.cl.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}); err != nil {
			t.Errorf("pod %s: %v, want it left as it is", p.Name, err)
		}
	}
	if d := writtenTotal(t, "repair") - repairsBefore; d != 0 {
		t.Errorf("fsm_webhooks_injector_bootstrap_secrets_written_total{writer=\"repair\"} went up by %v, want 0: a finished pod's Secret was written again", d)
	}
}

func injectorFinished(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}
