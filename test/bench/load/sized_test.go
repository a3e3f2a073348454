package main

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// serveSettings are the settings serve reads from the MeshConfig the tool
// installs (installMesh) with certKeyBits.
func serveSettings(t *testing.T, certKeyBits int) injector.Settings {
	t.Helper()
	u, err := validator.BaseMeshConfig(fsmNamespace, fsmnames.MeshConfigName)
	if err != nil {
		t.Fatal(err)
	}
	if certKeyBits == 0 {
		unstructured.RemoveNestedField(u.Object, "spec", "certificate", "certKeyBitSize")
	} else if err := unstructured.SetNestedField(u.Object, int64(certKeyBits), "spec", "certificate", "certKeyBitSize"); err != nil {
		t.Fatal(err)
	}
	var mc configv1alpha3.MeshConfig
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mc); err != nil {
		t.Fatal(err)
	}
	s, err := injector.SettingsFromMeshConfig(&mc).Checked()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testSizedAnswer(t *testing.T, s injector.Settings, m injector.Mesh, namespaces []string) *sizedAnswer {
	t.Helper()
	a, err := newSizedAnswer(s, m, namespaces)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A pod through the sized webhook is the pod the injector's Mutate makes of
// it (its sidecar, init container, labels and volumes), but for the
// bootstrap volume, which mounts the Secret the client wrote for the pod.
func TestSizedAnswerIsTheInjectorsPatch(t *testing.T) {
	defaults, err := injector.DefaultSettings().Checked()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		settings injector.Settings
		mesh     injector.Mesh
		pods     []client.ObjectKey // in the sized namespaces of a -namespaces 3 run
	}{
		{"serve, the chart's MeshConfig", serveSettings(t, chartCertKeyBits), meshedMesh(false),
			[]client.ObjectKey{{Namespace: nsSized, Name: "p-0"}, {Namespace: nsSized + "-2", Name: "p-1234"}}},
		{"serve, certKeyBitSize unset", serveSettings(t, 0), meshedMesh(false),
			[]client.ObjectKey{{Namespace: nsSized + "-1", Name: "p-5"}}},
		{"in-process handler, default settings", defaults, meshedMesh(true),
			[]client.ObjectKey{{Namespace: nsSized, Name: "p-17"}, {Namespace: nsSized + "-1", Name: "p-probe"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testSizedAnswer(t, tc.settings, tc.mesh, namespacesOf(3, nsSized))
			for _, key := range tc.pods {
				sent := clientPod(key)
				raw, err := json.Marshal(sent)
				if err != nil {
					t.Fatal(err)
				}
				ops, err := a.patchFor(key.Namespace, clientSecretName(key.Name))
				if err != nil {
					t.Fatal(err)
				}
				patch, err := json.Marshal(ops)
				if err != nil {
					t.Fatal(err)
				}
				got := applyPatch(t, raw, patch)

				mut, err := injector.Mutate(injector.MutateInput{
					Pod: sent, Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Namespace, Labels: namespaceLabels(key.Namespace)}},
					Settings: tc.settings, Mesh: tc.mesh, ProxyUUID: sizedUUID,
				})
				if err != nil {
					t.Fatal(err)
				}
				want := mut.Pod
				for i := range want.Spec.Volumes {
					if want.Spec.Volumes[i].Name == injector.BootstrapVolumeName {
						want.Spec.Volumes[i].Secret.SecretName = clientSecretName(key.Name)
					}
				}
				if !equality.Semantic.DeepEqual(got, want) {
					gotJSON, _ := json.Marshal(got)
					wantJSON, _ := json.Marshal(want)
					t.Errorf("%s: pod through the sized webhook\n%s\nwant the injector's\n%s", key, gotJSON, wantJSON)
				}
				// The check the phase's activation probe makes on the
				// apiserver's answer.
				if err := sizedInjected(got); err != nil {
					t.Errorf("%s: %v", key, err)
				}
			}
			if _, err := a.patchFor(nsSecret, "s-0"); err == nil {
				t.Errorf("patchFor(%s): no error, want one (not a sized namespace)", nsSecret)
			}
		})
	}
}

// The answer for one pod does not leak into the next: the per-pod volume
// is a copy.
func TestSizedAnswerPerPodVolume(t *testing.T) {
	a := testSizedAnswer(t, serveSettings(t, chartCertKeyBits), meshedMesh(false), []string{nsSized})
	first, err := a.patchFor(nsSized, "s-1")
	if err != nil {
		t.Fatal(err)
	}
	firstJSON, _ := json.Marshal(first)
	if _, err := a.patchFor(nsSized, "s-2"); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(first)
	if string(firstJSON) != string(again) || !strings.Contains(string(firstJSON), `"secretName":"s-1"`) || strings.Contains(string(firstJSON), "s-2") {
		t.Errorf("the first pod's patch changed after the second's:\n%s\nthen\n%s", firstJSON, again)
	}
}

// sizedInjected refuses what did not go through the webhook, or mounts
// another pod's Secret.
func TestSizedInjectedRefuses(t *testing.T) {
	a := testSizedAnswer(t, serveSettings(t, chartCertKeyBits), meshedMesh(false), []string{nsSized})
	injected := func(name, secret string) *corev1.Pod {
		t.Helper()
		sent := clientPod(client.ObjectKey{Namespace: nsSized, Name: name})
		raw, _ := json.Marshal(sent)
		ops, err := a.patchFor(nsSized, secret)
		if err != nil {
			t.Fatal(err)
		}
		patch, _ := json.Marshal(ops)
		return applyPatch(t, raw, patch)
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ok   bool
	}{
		{"injected", injected("p-3", "s-3"), true},
		{"another pod's Secret", injected("p-3", "s-4"), false},
		{"not injected", clientPod(client.ObjectKey{Namespace: nsSized, Name: "p-3"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := sizedInjected(tc.pod); (err == nil) != tc.ok {
				t.Errorf("sizedInjected: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
