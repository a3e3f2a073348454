package injector

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
)

// errorLines records the lines logged with Error, and whether anything was
// logged at V(0) with Info.
type errorLines struct {
	mu     sync.Mutex
	errors []string
	infos  int
}

type errorSink struct {
	rec *errorLines
	kv  []any
}

func (s errorSink) Init(logr.RuntimeInfo)  {}
func (s errorSink) Enabled(level int) bool { return level == 0 }
func (s errorSink) Info(int, string, ...any) {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	s.rec.infos++
}

func (s errorSink) Error(err error, msg string, kv ...any) {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	var b strings.Builder
	b.WriteString(msg + ": " + err.Error())
	for _, v := range append(append([]any(nil), s.kv...), kv...) {
		b.WriteString(" ")
		fmt.Fprint(&b, v)
	}
	s.rec.errors = append(s.rec.errors, b.String())
}

func (s errorSink) WithValues(kv ...any) logr.LogSink {
	return errorSink{rec: s.rec, kv: append(append([]any(nil), s.kv...), kv...)}
}
func (s errorSink) WithName(string) logr.LogSink { return s }

// TestFailedAdmissionLoggedOnceAsError: every admission the injector fails
// (result "error" in fsm_webhooks_requests_total, which
// FSMWebhooksAdmissionErrors counts and whose description sends the reader
// to the servers' logs) leaves one error line naming the request and the
// cause. The BadRequest answers (a kind it does not serve, no object, an
// object that is not a pod, no namespace) were logged nowhere: the alert
// could fire with nothing in the logs to say why.
func TestFailedAdmissionLoggedOnceAsError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*admissionv1.AdmissionRequest)
		want   string
	}{
		{"wrong kind", func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "Service" }, `expected a v1 Pod or a machine.flomesh.io/v1alpha1 VirtualMachine, got "/v1, Kind=Service"`},
		{"missing object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }, "admission request has no pod object"},
		{"object not a pod", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":{"containers":"nope"}}`) }, "decoding pod"},
		{"unknown namespace (500)", func(r *admissionv1.AdmissionRequest) { r.Namespace = "ghost" }, "reading namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil)
			rec := &errorLines{}
			f.h.log = logr.New(errorSink{rec: rec})
			_, resp := f.post(t, reviewBody(t, tc.mutate), "application/json")
			if resp.Allowed {
				t.Fatalf("allowed: %+v", resp)
			}
			if len(rec.errors) != 1 {
				t.Fatalf("%d error lines, want 1: %q", len(rec.errors), rec.errors)
			}
			if l := rec.errors[0]; !strings.Contains(l, tc.want) || !strings.Contains(l, "uid-1") {
				t.Errorf("error line %q, want one saying %q and naming the request uid-1", l, tc.want)
			}
		})
	}
}
