package injector_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testAppNativeSidecar: a pod with its own native sidecar (an init
// container with restartPolicy Always) is injected with fsm-init after it,
// as FSM v1.5.1 injects it, and stored; the client is warned that the
// sidecar's traffic escapes the mesh before fsm-init and fails while the
// proxy is not running, and told which annotation starts the proxy first.
func (e *e2e) testAppNativeSidecar(t *testing.T) {
	ctx := context.Background()
	cl, rec := e.warningClient(t)
	ns := e.namespace(t, ctx, "app-native-sidecar", true)
	p := pod("web", ns)
	p.Spec.InitContainers = []corev1.Container{{Name: "shipper", Image: "shipper", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatalf("create: %v", err)
	}
	var inits []string
	for _, c := range p.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	if !slices.Equal(inits, []string{"shipper", injector.InitContainerName}) {
		t.Fatalf("init containers %q, want [shipper fsm-init]", inits)
	}
	want := `native sidecar "shipper" (spec.initContainers, restartPolicy Always) started before fsm-init, outside the mesh`
	if !slices.ContainsFunc(rec.all(), func(w string) bool {
		return strings.Contains(w, want) && strings.Contains(w, injector.SidecarNativeAnnotation)
	}) {
		t.Fatalf("warnings %q, want one containing %q and naming %s", rec.all(), want, injector.SidecarNativeAnnotation)
	}
	// A Deployment's pod: its ReplicaSet created it and alone saw the
	// admission's warnings, so they go to the ReplicaSet as an Event.
	owned := pod("web", ns)
	owned.Spec.InitContainers = p.Spec.InitContainers[:1]
	rs := replicaSetOf(owned)
	if err := e.cl.Create(ctx, rs); err != nil {
		t.Fatalf("creating ReplicaSet: %v", err)
	}
	owned.Name, owned.GenerateName = "", rs.Name+"-"
	owned.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}
	if err := cl.Create(ctx, owned); err != nil {
		t.Fatalf("ReplicaSet's pod create: %v", err)
	}
	eventually(t, settleWithin, "a warning event on the ReplicaSet", func() (bool, error) {
		l := &eventsv1.EventList{}
		if err := e.cl.List(ctx, l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(l.Items, func(ev eventsv1.Event) bool {
			return ev.Regarding.Kind == "ReplicaSet" && ev.Regarding.Name == rs.Name && ev.Reason == injector.EventSidecarInjectedWithWarnings &&
				ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Note, want)
		}), nil
	})
}

// testJobNeverCompletes: a Job's pod injected with the proxy as a regular
// container never completes; the Job, which created the pod and alone saw
// the admission's warning, is told so in a Warning Event.
func (e *e2e) testJobNeverCompletes(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "job-never-completes", true)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "app", Image: "app"}},
		}}},
	}
	if err := e.cl.Create(ctx, job); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "once-", Namespace: ns, Labels: job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatalf("the Job's pod create: %v", err)
	}
	const want = "spec.restartPolicy Never: the sidecar container keeps running, so the pod never completes"
	eventually(t, settleWithin, "a warning event on the Job", func() (bool, error) {
		l := &eventsv1.EventList{}
		if err := e.cl.List(ctx, l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(l.Items, func(ev eventsv1.Event) bool {
			return ev.Regarding.Kind == "Job" && ev.Regarding.Name == job.Name && ev.Reason == injector.EventSidecarInjectedWithWarnings &&
				strings.Contains(ev.Note, want)
		}), nil
	})
}

// replicaSetOf is a ReplicaSet of p's spec (no controller runs here: it is
// only the owner its pods name).
func replicaSetOf(p *corev1.Pod) *appsv1.ReplicaSet {
	labels := map[string]string{"app": "web"}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-rs", Namespace: p.Namespace},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: *p.Spec.DeepCopy()},
		},
	}
}
