package injector_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testAppCollidesWithInjected: a Deployment's pod whose app container runs
// as the proxy's uid (exempt from interception by fsm-init's rules) and
// declares the proxy's outbound port is injected and stored as FSM v1.5.1
// stores it; the ReplicaSet, which alone saw the admission's warnings, gets
// them as a Warning Event naming the container, the fields and what they
// collide with.
func (e *e2e) testAppCollidesWithInjected(t *testing.T) {
	ctx := context.Background()
	cl, rec := e.warningClient(t)
	ns := e.namespace(t, ctx, "app-collides", true)
	p := pod("web", ns)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(injector.ProxyUID)}
	p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "proxy", ContainerPort: injector.ProxyOutboundPort})
	rs := replicaSetOf(p)
	if err := e.cl.Create(ctx, rs); err != nil {
		t.Fatalf("creating ReplicaSet: %v", err)
	}
	p.Name, p.GenerateName = "", rs.Name+"-"
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatalf("create: %v", err)
	}
	if !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == injector.SidecarContainerName }) {
		t.Fatalf("stored pod has no %s container", injector.SidecarContainerName)
	}
	wants := []string{
		`spec.securityContext.runAsUser 1500 is the proxy's uid: traffic of container "app" bypasses the mesh`,
		`container "app" spec.containers[0].ports: the injected containers listen on 15001/TCP`,
	}
	for _, want := range wants {
		if !slices.ContainsFunc(rec.all(), func(w string) bool { return strings.Contains(w, want) }) {
			t.Fatalf("warnings %q, want one containing %q", rec.all(), want)
		}
	}
	eventually(t, settleWithin, "a warning event on the ReplicaSet", func() (bool, error) {
		l := &eventsv1.EventList{}
		if err := e.cl.List(ctx, l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(l.Items, func(ev eventsv1.Event) bool {
			return ev.Regarding.Kind == "ReplicaSet" && ev.Regarding.Name == rs.Name && ev.Reason == injector.EventSidecarInjectedWithWarnings &&
				ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Note, wants[0]) && strings.Contains(ev.Note, wants[1])
		}), nil
	})
}
