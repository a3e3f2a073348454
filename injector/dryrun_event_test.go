package injector

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestDryRunRefusalWritesNoEvent: the registration declares
// sideEffects NoneOnDryRun, Probe says "Nothing is persisted", and the
// contract is that a dry run writes nothing. A dry-run pod the injector
// refuses (a bad annotation here; the readiness probe's own dry-run pod when
// localDNSProxy is on and fsm-controller's Service is missing) still gets a
// Warning Event "SidecarInjectionRefused" written through Options.Recorder:
// an API write, and an event telling of a refusal that refused nothing that
// was to be stored.
func TestDryRunRefusalWritesNoEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*admissionv1.AdmissionRequest)
	}{
		{"pod with a bad annotation", func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw, _ = json.Marshal(simplePod(map[string]string{SidecarInjectionAnnotation: "on"}))
		}},
		{"pod with a bad port exclusion", func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw, _ = json.Marshal(simplePod(map[string]string{InboundPortExclusionAnnotation: "x"}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil)
			_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				tc.mut(r)
				r.DryRun = ptrBool(true)
			}), "application/json")
			if resp.Allowed {
				t.Fatalf("dry run of a bad pod allowed: %+v", resp)
			}
			if n := len(f.recorder.events); n != 0 {
				t.Fatalf("a dry-run admission wrote %d Event(s) (%q); a dry run must write nothing (sideEffects NoneOnDryRun)", n, f.recorder.events[0].note)
			}
			// The same refusal for real tells the owner.
			_, resp = f.post(t, reviewBody(t, tc.mut), "application/json")
			if resp.Allowed || len(f.recorder.events) != 1 {
				t.Errorf("refused for real: allowed %v, %d Event(s), want a denial and one Event", resp.Allowed, len(f.recorder.events))
			}
		})
	}
}

// TestWarningsReachTheOwner: an injected pod's admission warnings reach
// only its creator; a controller's pod (a ReplicaSet's) has them written
// as a Warning Event on the controller, a pod created directly or in a dry
// run has none. A long note is cut to what the apiserver stores.
func TestWarningsReachTheOwner(t *testing.T) {
	nativeSidecar := func(n int) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			for i := range n {
				p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("shipper-%d", i), Image: "shipper",
					RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)})
			}
		}
	}
	controller := func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "rs-1", Controller: ptr.To(true)}}
	}
	for _, tc := range []struct {
		name       string
		edits      []func(*corev1.Pod)
		dryRun     bool
		wantEvents int
	}{
		{"ReplicaSet's pod", []func(*corev1.Pod){nativeSidecar(1), controller}, false, 1},
		{"ReplicaSet's pod with many warnings", []func(*corev1.Pod){nativeSidecar(20), controller}, false, 1},
		{"pod created directly", []func(*corev1.Pod){nativeSidecar(1)}, false, 0},
		{"ReplicaSet's pod in a dry run", []func(*corev1.Pod){nativeSidecar(1), controller}, true, 0},
		{"ReplicaSet's pod without warnings", []func(*corev1.Pod){controller}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil)
			p := simplePod(nil)
			for _, edit := range tc.edits {
				edit(p)
			}
			_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				r.Object.Raw, _ = json.Marshal(p)
				r.DryRun = ptr.To(tc.dryRun)
			}), "application/json")
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			if got := len(f.recorder.events); got != tc.wantEvents {
				t.Fatalf("%d Event(s), want %d (warnings %q)", got, tc.wantEvents, resp.Warnings)
			}
			if tc.wantEvents == 0 {
				return
			}
			ev := f.recorder.events[0]
			ref, _ := ev.regarding.(*corev1.ObjectReference)
			if ref == nil || ref.Kind != "ReplicaSet" || ref.Name != "web-5d8f" || ref.Namespace != "app" {
				t.Errorf("Event regarding %+v, want ReplicaSet app/web-5d8f", ev.regarding)
			}
			if !strings.HasPrefix(ev.note, "pod p injected with warnings: "+resp.Warnings[0]) && len(ev.note) != maxEventNote {
				t.Errorf("Event note %q, want the warnings %q", ev.note, resp.Warnings)
			}
			if len(ev.note) > maxEventNote {
				t.Errorf("Event note of %d bytes: the apiserver refuses notes over %d", len(ev.note), maxEventNote)
			}
		})
	}
}
