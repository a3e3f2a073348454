package injector

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestNativeSidecarsProblem: native mode needs an apiserver that keeps an
// init container's restartPolicy (1.29+); an older one, vendor suffixes
// included, is named in the refusal; an unknown version (none, unparsable,
// an unstamped build's v0.0.0) is let through.
func TestNativeSidecarsProblem(t *testing.T) {
	for _, tc := range []struct {
		version string
		refused bool
	}{
		{"", false},
		{"not-a-version", false},
		{"v0.0.0-master+$Format:%H$", false},
		{"v1.27.16", true},
		{"v1.28.15-eks-7f9249a", true},
		{"v1.28.0", true},
		{"v1.29.0", false},
		{"v1.29.1-gke.1589018", false},
		{"v1.37.2", false},
		{"v2.0.0", false},
	} {
		t.Run(tc.version, func(t *testing.T) {
			err := nativeSidecarsProblem(tc.version, "")
			if (err != nil) != tc.refused {
				t.Fatalf("nativeSidecarsProblem(%q) = %v, want refused %v", tc.version, err, tc.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "Kubernetes "+tc.version+" ") {
				t.Errorf("message does not name the version: %v", err)
			}
		})
	}
}

// TestNativeModeNeedsKubernetes129: on an apiserver older than 1.29 a pod
// asking for native mode is refused before any Secret, naming the
// annotation, where it is, and the version: the apiserver would drop
// the sidecar's restartPolicy and the pod would never leave Init. Without the
// annotation, or on 1.29, injection is as before; a copy of an injected
// pod keeps its containers.
func TestNativeModeNeedsKubernetes129(t *testing.T) {
	const msg = `annotation "flomesh.io/sidecar-native"%s asks for a native sidecar, but the apiserver is Kubernetes v1.28.15 (read when fsm-webhooks started): ` +
		`native sidecars (init containers with restartPolicy: Always) need Kubernetes >= 1.29 (SidecarContainers), and an older apiserver ` +
		`drops the field, so the sidecar init container would never exit and the pod would never start; remove the annotation or set it to "false"`
	on := map[string]string{SidecarNativeAnnotation: "true"}
	for _, tc := range []struct {
		name, version string
		pod, ns       map[string]string
		want          string // error; "" injected
		native        bool
	}{
		{name: "1.28, on the pod", version: "v1.28.15", pod: on, want: strings.Replace(msg, "%s", "", 1)},
		{name: "1.28, on the namespace", version: "v1.28.15", ns: on, want: strings.Replace(msg, "%s", onNamespace, 1)},
		{name: "1.28, off on the pod beats on on the namespace", version: "v1.28.15", pod: map[string]string{SidecarNativeAnnotation: "false"}, ns: on},
		{name: "1.28 without the annotation", version: "v1.28.15"},
		{name: "1.29", version: "v1.29.0", pod: on, native: true},
		{name: "version unknown", pod: on, native: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mesh := testMesh
			mesh.KubeVersion = tc.version
			m, err := mutateWith(t, simplePod(tc.pod), tc.ns, DefaultSettings(), mesh)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error %v\nwant %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := proxyIsNative(m.Pod); got != tc.native {
				t.Fatalf("the sidecar a native sidecar: %v, want %v", got, tc.native)
			}
		})
	}
	t.Run("a copy of an injected pod", func(t *testing.T) {
		mesh := testMesh
		injected, err := mutateWith(t, simplePod(on), nil, DefaultSettings(), mesh)
		if err != nil {
			t.Fatal(err)
		}
		mesh.KubeVersion = "v1.28.15"
		if _, err := Mutate(MutateInput{Pod: injected.Pod, Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: mesh,
			ProxyUUID: "u-2", Reinject: true}); err != nil {
			t.Fatal(err)
		}
	})
}

func proxyIsNative(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == SidecarContainerName {
			return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	return false
}

// TestHandlerRefusesNativeModeBefore129: through the handler, the refusal
// writes no bootstrap Secret.
func TestHandlerRefusesNativeModeBefore129(t *testing.T) {
	f := newHandlerFixture(t, stubIssuer{}, nil)
	f.h.mesh.KubeVersion = "v1.27.16"
	_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
		pod := simplePod(map[string]string{SidecarNativeAnnotation: "true"})
		r.Object.Raw, _ = json.Marshal(pod)
	}), "application/json")
	if resp.Allowed || !strings.Contains(resp.Result.Message, "Kubernetes v1.27.16") {
		t.Fatalf("allowed=%v message %q, want a refusal naming Kubernetes v1.27.16", resp.Allowed, resp.Result.Message)
	}
	if len(f.secrets) != 0 {
		t.Fatalf("%d bootstrap Secrets written for a refused pod", len(f.secrets))
	}
}
