package injector

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// TestAppNativeSidecarBeforeInit: fsm-init goes after the app's init
// containers (FSM's order: they reach the network before the rules exist),
// so an app's native sidecar (an init container with restartPolicy Always)
// runs before fsm-init and on until the pod ends, outliving a proxy that
// is a regular container. The pod is injected as FSM injects it, with a
// warning naming the container and the annotation that starts the proxy
// before it; in native mode the proxy is already first.
func TestAppNativeSidecarBeforeInit(t *testing.T) {
	const want = `native sidecar "shipper" (spec.initContainers, restartPolicy Always) started before fsm-init, outside the mesh; ` +
		`annotate flomesh.io/sidecar-native: "true" [docs: native-sidecars]`
	native := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: name, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	}
	for _, tc := range []struct {
		name  string
		inits []corev1.Container
		ann   map[string]string
		want  []string
	}{
		{name: "an app native sidecar", inits: []corev1.Container{{Name: "migrate", Image: "m"}, native("shipper")}, want: []string{want}},
		{name: "only regular init containers", inits: []corev1.Container{{Name: "migrate", Image: "m"}}},
		{name: "native mode: the proxy starts first", inits: []corev1.Container{native("shipper")}, ann: map[string]string{SidecarNativeAnnotation: "true"}},
		{name: "restartPolicy Never is no sidecar", inits: []corev1.Container{{Name: "shipper", Image: "s", RestartPolicy: ptr.To(corev1.ContainerRestartPolicy("Never"))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(tc.ann)
			pod.Spec.InitContainers = tc.inits
			m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Warnings, tc.want) {
				t.Fatalf("warnings %q\nwant %q", m.Warnings, tc.want)
			}
		})
	}
}

// TestNeverCompletesWarning: a pod meant to end (a Job's: restartPolicy
// Never or OnFailure) injected with the proxy as a regular container never
// completes, as under FSM: injected as FSM injects it, with a warning naming
// native mode; none for a pod that restarts, or in native mode.
func TestNeverCompletesWarning(t *testing.T) {
	const want = `spec.restartPolicy %s: the sidecar container keeps running, so the pod never completes; annotate flomesh.io/sidecar-native: "true" [docs: never-completes]`
	for _, tc := range []struct {
		policy corev1.RestartPolicy
		ann    map[string]string
		want   []string
	}{
		{policy: corev1.RestartPolicyNever, want: []string{fmt.Sprintf(want, "Never")}},
		{policy: corev1.RestartPolicyOnFailure, want: []string{fmt.Sprintf(want, "OnFailure")}},
		{policy: corev1.RestartPolicyAlways},
		{policy: ""}, // defaulted to Always after the webhooks
		{policy: corev1.RestartPolicyNever, ann: map[string]string{SidecarNativeAnnotation: "true"}},
	} {
		t.Run(fmt.Sprintf("%q %v", tc.policy, tc.ann), func(t *testing.T) {
			pod := simplePod(tc.ann)
			pod.Spec.RestartPolicy = tc.policy
			m, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Warnings, tc.want) {
				t.Fatalf("warnings %q\nwant %q", m.Warnings, tc.want)
			}
		})
	}
}
