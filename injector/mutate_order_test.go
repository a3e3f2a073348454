package injector

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestContainerOrderAsFSM: spec.containers in FSM v1.5.1's order
// (pkg/sidecar/v1/providers/pipy/driver/sidecar.go Patch): fsm-healthcheck
// is appended first, then the sidecar is put first when the application
// is held until the proxy starts, last when not. The corpus had no case
// without hold and with a TCP probe, where ours differed (found by a review
// against FSM's source).
func TestContainerOrderAsFSM(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hold  bool
		probe bool
		want  []string
	}{
		{"hold, TCP probe", true, true, []string{SidecarContainerName, "app", HealthcheckContainerName}},
		{"no hold, TCP probe", false, true, []string{"app", HealthcheckContainerName, SidecarContainerName}},
		{"hold, no probe", true, false, []string{SidecarContainerName, "app"}},
		{"no hold, no probe", false, false, []string{"app", SidecarContainerName}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			if tc.probe {
				pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)},
				}}
			}
			s := DefaultSettings()
			s.HoldApplicationUntilProxyStarts = tc.hold
			mut, err := mutateWith(t, pod, nil, s, testMesh)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range mut.Pod.Spec.Containers {
				got = append(got, c.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("spec.containers %v, want FSM's %v", got, tc.want)
			}
		})
	}
}
