package injector

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func resources(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

// TestPodLevelResources: an injection that makes a pod with pod-level
// resources break the apiserver's rules (validatePodResourceConsistency) is
// refused, naming the pod-level field, the injected container's value and
// where it comes from; a pod that breaks them by itself, or that the
// injected containers fit, is injected (the apiserver judges the former).
func TestPodLevelResources(t *testing.T) {
	tests := []struct {
		name     string
		podLevel *corev1.ResourceRequirements
		app      corev1.ResourceRequirements
		sidecar  corev1.ResourceRequirements
		init     corev1.ResourceRequirements
		podAnn   map[string]string
		nsAnn    map[string]string
		native   bool
		want     []string // substrings of the error; none: injected
	}{
		{name: "no pod-level resources", sidecar: corev1.ResourceRequirements{Limits: resources("cpu", "2")}},
		{
			name:     "sidecar limit above the pod's",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "1")},
			sidecar:  corev1.ResourceRequirements{Limits: resources("cpu", "2")},
			want:     []string{"container sidecar's cpu limit 2 (MeshConfig spec.sidecar.resources) is above the pod's limit spec.resources.limits[cpu] 1: raise it to at least 2", "flomesh.io/sidecar-injection: disabled"},
		},
		{
			name:     "sidecar limit from the pod's annotation",
			podLevel: &corev1.ResourceRequirements{Limits: resources("memory", "256Mi")},
			podAnn:   map[string]string{SidecarResourceLimitsPrefix + "memory": "512Mi"},
			want:     []string{"container sidecar's memory limit 512Mi (annotation flomesh.io/sidecar-resource-limits-memory) is above the pod's limit spec.resources.limits[memory] 256Mi"},
		},
		{
			name:     "sidecar limit within the pod's",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "2")},
			sidecar:  corev1.ResourceRequirements{Limits: resources("cpu", "2")},
		},
		{
			// The pod-level request defaults to the pod's own sum before
			// the webhook on Kubernetes 1.34-1.36: set here.
			name:     "requests: the sidecar's on top of a pod-level request equal to the app's",
			podLevel: &corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			sidecar:  corev1.ResourceRequirements{Requests: resources("cpu", "100m")},
			want:     []string{"spec.resources.requests[cpu] 500m is below the containers' aggregate request of 600m with sidecar's 100m (MeshConfig spec.sidecar.resources): raise it to at least 600m"},
		},
		{
			name:     "requests: the sidecar's defaulted from its limit, on the namespace",
			podLevel: &corev1.ResourceRequirements{Requests: resources("memory", "128Mi")},
			app:      corev1.ResourceRequirements{Requests: resources("memory", "100Mi")},
			nsAnn:    map[string]string{SidecarResourceLimitsPrefix + "memory": "64Mi"},
			want:     []string{"spec.resources.requests[memory] 128Mi is below the containers' aggregate request of 164Mi with sidecar's 64Mi (annotation flomesh.io/sidecar-resource-limits-memory on the namespace)"},
		},
		{
			// An init container's request counts alone (its peak), not
			// added to the app's: fsm-init's 300m fits a 500m pod.
			name:     "requests: fsm-init's peak within the pod's",
			podLevel: &corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "400m")},
			init:     corev1.ResourceRequirements{Requests: resources("cpu", "300m")},
		},
		{
			name:     "requests: fsm-init's peak above the pod's",
			podLevel: &corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			init:     corev1.ResourceRequirements{Requests: resources("cpu", "800m")},
			want:     []string{"spec.resources.requests[cpu] 500m is below the containers' aggregate request of 800m with fsm-init's 800m (MeshConfig spec.sidecar.initResources)"},
		},
		{
			// A native sidecar's limit is not a regular container's: only
			// its request counts, with the app's.
			name:     "native sidecar: request counted, limit not compared",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "1"), Requests: resources("cpu", "1")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "1")},
			sidecar:  corev1.ResourceRequirements{Limits: resources("cpu", "2"), Requests: resources("cpu", "100m")},
			native:   true,
			want:     []string{"spec.resources.requests[cpu] 1 is below the containers' aggregate request of 1100m with sidecar's 100m"},
		},
		{
			// Kubernetes 1.37 defaults the pod-level request after the
			// webhooks to the aggregate, 2100m, above the limit.
			name:     "no pod-level request set: its default above the pod's limit",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "2")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "2")},
			sidecar:  corev1.ResourceRequirements{Requests: resources("cpu", "100m")},
			want:     []string{"spec.resources.limits[cpu] 2 is below the containers' aggregate request of 2100m with sidecar's 100m (MeshConfig spec.sidecar.resources), to which the pod-level request (not set) defaults: raise the limit to at least 2100m"},
		},
		{
			name:     "no pod-level request set: its default within the pod's limit",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "2")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "1")},
			sidecar:  corev1.ResourceRequirements{Requests: resources("cpu", "100m")},
		},
		{
			// Only hugepages are held to the pod's limit in aggregate; a
			// cpu limit is held per container, so containers may share
			// the pod's limit between them.
			name:     "limits: cpu limits together above the pod's",
			podLevel: &corev1.ResourceRequirements{Limits: resources("cpu", "2")},
			app:      corev1.ResourceRequirements{Limits: resources("cpu", "1500m"), Requests: resources("cpu", "100m")},
			sidecar:  corev1.ResourceRequirements{Limits: resources("cpu", "1"), Requests: resources("cpu", "100m")},
		},
		{
			name:     "requests: the sidecar's from the pod's requests annotation",
			podLevel: &corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "500m")},
			podAnn:   map[string]string{SidecarResourceRequestsPrefix + "cpu": "100m"},
			want:     []string{"spec.resources.requests[cpu] 500m is below the containers' aggregate request of 600m with sidecar's 100m (annotation flomesh.io/sidecar-resource-requests-cpu): raise it to at least 600m"},
		},
		{
			// The pod breaks the rule as written: the apiserver says so,
			// in its words; the injection adds nothing to blame.
			name:     "the pod's own excess",
			podLevel: &corev1.ResourceRequirements{Requests: resources("cpu", "100m")},
			app:      corev1.ResourceRequirements{Requests: resources("cpu", "1")},
			sidecar:  corev1.ResourceRequirements{Requests: resources("cpu", "100m")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			s.Resources, s.InitResources = tc.sidecar, tc.init
			ann := map[string]string{}
			for k, v := range tc.podAnn {
				ann[k] = v
			}
			if tc.native {
				ann[SidecarNativeAnnotation] = "true"
			}
			pod := simplePod(ann)
			pod.Spec.Resources = tc.podLevel
			pod.Spec.Containers[0].Resources = tc.app
			_, err := mutateWith(t, pod, tc.nsAnn, s, testMesh)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("injected, want a refusal saying %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
