package local

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

func TestDescribeInjection(t *testing.T) {
	web := corev1.Container{Name: "web", Image: "nginx:1.27", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/fsm-readiness-probe", Port: intstr.FromInt32(15901)},
	}}}
	injected := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app", Labels: map[string]string{injector.ProxyUUIDLabel: "u-1"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "fsm-init", Image: "flomesh/fsm-sidecar-init:1.5.1"},
				{Name: "sidecar", Image: "flomesh/pipy:1.5.12", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
			},
			Containers: []corev1.Container{web},
		},
	}
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want []string
	}{
		{
			name: "not injected",
			pod:  corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{web}}},
			want: []string{"not injected (no fsm-proxy-uuid label)"},
		},
		{
			name: "native sidecar and a probe through the proxy",
			pod:  injected,
			want: []string{
				"label fsm-proxy-uuid=u-1, bootstrap Secret sidecar-bootstrap-config-u-1",
				"init container  fsm-init         flomesh/fsm-sidecar-init:1.5.1",
				"init container  sidecar          flomesh/pipy:1.5.12 (native sidecar)",
				"container       web              nginx:1.27",
				"  readiness probe via the proxy: port 15901 path /fsm-readiness-probe",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeInjection(&tc.pod); !slices.Equal(got, tc.want) {
				t.Errorf("describeInjection:\ngot  %q\nwant %q", got, tc.want)
			}
		})
	}
}
