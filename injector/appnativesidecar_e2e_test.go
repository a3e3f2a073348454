package injector_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

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
	want := `init container "shipper" is a native sidecar (restartPolicy: Always) and starts before fsm-init: its outbound connections opened before fsm-init bypass the proxy`
	if !slices.ContainsFunc(rec.all(), func(w string) bool {
		return strings.Contains(w, want) && strings.Contains(w, injector.SidecarNativeAnnotation)
	}) {
		t.Fatalf("warnings %q, want one containing %q and naming %s", rec.all(), want, injector.SidecarNativeAnnotation)
	}
}
