package uninstall

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestScaleToZeroReportsListFailure: when the hook cannot list the
// servers' pods (RBAC Forbidden, a persistent failure), it should say so
// promptly instead of polling silently until --timeout and reporting only
// "context deadline exceeded".
func TestScaleToZeroReportsListFailure(t *testing.T) {
	// A hang guard: the hook must return on its own, long before it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster()
	c.cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "", errForbidden)
	})
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName}
	start := time.Now()
	err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o)
	took := time.Since(start)
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "forbidden") {
		t.Errorf("after %s: error %q does not name the cause (pods list Forbidden)", took.Round(time.Millisecond), err)
	}
	// Polling until the deadline would also name the Forbidden list (as
	// the last one), so what tells "promptly" is that the hook returned
	// before its context ended.
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Errorf("the hook polled a Forbidden pod list until its context ended (%s): %v", took.Round(time.Millisecond), err)
	}
}

var errForbidden = forbiddenErr{}

type forbiddenErr struct{}

func (forbiddenErr) Error() string { return "RBAC: not allowed to list pods" }

// TestScaleToZeroIgnoresEvictedPods: a server pod that was evicted
// (or shut down by a graceful node shutdown) stays in the API in phase
// Failed, with no deletionTimestamp, until the pod GC or the ReplicaSet's
// deletion removes it: scaling the Deployment to zero does not delete it
// (the ReplicaSet controller only deletes active pods). No container of it
// runs, so nothing is left to wait for; the hook must not time out on it.
func TestScaleToZeroIgnoresEvictedPods(t *testing.T) {
	// A hang guard: a hook waiting for the evicted pod polls until it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster()
	evicted := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fsm-webhooks-7d9f-evicted", Labels: map[string]string{"app": "fsm-webhooks"}},
		Status:     corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."},
	}
	if err := c.cs.Tracker().Add(evicted); err != nil {
		t.Fatal(err)
	}
	o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks", MeshConfigName: fsmnames.MeshConfigName}
	if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
		t.Fatalf("uninstall with an evicted server pod left: %v", err)
	}
}
