package injector

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
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
