package validator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
)

// logLine is one line a recordingSink received.
type logLine struct {
	err bool // logged with Error
	msg string
	kv  []any
}

// recordingSink keeps every line logged at V(0) (WithValues folded in).
type recordingSink struct {
	mu    *sync.Mutex
	lines *[]logLine
	kv    []any
}

func newRecording() (logr.Logger, func() []logLine) {
	s := &recordingSink{mu: &sync.Mutex{}, lines: &[]logLine{}}
	return logr.New(s), func() []logLine {
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]logLine(nil), *s.lines...)
	}
}

func (s *recordingSink) Init(logr.RuntimeInfo)  {}
func (s *recordingSink) Enabled(level int) bool { return level == 0 }
func (s *recordingSink) Info(_ int, msg string, kv ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.lines = append(*s.lines, logLine{msg: msg, kv: append(append([]any(nil), s.kv...), kv...)})
}

func (s *recordingSink) Error(err error, msg string, kv ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.lines = append(*s.lines, logLine{err: true, msg: msg + ": " + err.Error(), kv: append(append([]any(nil), s.kv...), kv...)})
}

func (s *recordingSink) WithValues(kv ...any) logr.LogSink {
	c := *s
	c.kv = append(append([]any(nil), s.kv...), kv...)
	return &c
}
func (s *recordingSink) WithName(string) logr.LogSink { return s }

// failingReader fails every read, as an apiserver that cannot be reached.
type failingReader struct{ client.Reader }

func (failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("connection refused")
}

// TestFailedRequestLoggedOnceAsError: a request the validator fails (result
// "error" in fsm_webhooks_requests_total, which FSMWebhooksAdmissionErrors
// watches and whose runbook says to read the servers' logs) is logged once,
// as an error naming the object and the cause; a denial stays one info line.
// Before, a failed policy validation was logged twice (the error, then
// "denied" at info), and a failed namespace read or a request the validator
// cannot act on only as an info "denied", as if the user's object had been
// refused.
func TestFailedRequestLoggedOnceAsError(t *testing.T) {
	mc := func(op admissionv1.Operation) admission.Request {
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: op, Namespace: "fsm-system", Name: "fsm-mesh-config",
			Kind: metav1.GroupVersionKind{Group: meshconfig.Group, Version: "v1alpha3", Kind: meshconfig.Kind},
		}}
	}
	accessCert := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Namespace: "ns", Name: "ac",
		Kind:   metav1.GroupVersionKind{Group: "policy.flomesh.io", Version: "v1alpha1", Kind: policy.KindAccessCert},
		Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"policy.flomesh.io/v1alpha1","kind":"AccessCert","metadata":{"name":"ac"}}`)},
	}}
	unknown := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Namespace: "ns", Name: "x",
		Kind: metav1.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"},
	}}
	cases := []struct {
		name      string
		reader    client.Reader
		req       admission.Request
		wantError string // "" for a denial: one info line, no error
	}{
		{"policy validation fails (no reader)", nil, accessCert, "validator: no Reader configured"},
		{"namespace read fails on MeshConfig delete", failingReader{}, mc(admissionv1.Delete), "reading namespace fsm-system: connection refused"},
		{"a kind the validator does not serve", nil, unknown, "unknown gvk: example.com/v1, Kind=Widget"},
		{"a denial", nil, mc(admissionv1.Create), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log, lines := newRecording()
			h := NewHandler(Options{FSMNamespace: "fsm-system", Reader: c.reader, Logger: log})
			if c.name == "a denial" {
				c.req.Object = runtime.RawExtension{Raw: []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"other","namespace":"fsm-system"}}`)}
				c.req.Name = "other"
			}
			resp := h.Handle(context.Background(), c.req)
			if resp.Allowed {
				t.Fatalf("allowed: %+v", resp)
			}
			got := lines()
			if len(got) != 1 {
				t.Fatalf("%d lines logged, want 1: %+v", len(got), got)
			}
			l := got[0]
			if c.wantError == "" {
				if l.err {
					t.Errorf("a denial logged as an error: %+v", l)
				}
				return
			}
			if !l.err || !strings.Contains(l.msg, c.wantError) {
				t.Errorf("logged %+v, want an error line saying %q", l, c.wantError)
			}
			if !slicesContain(l.kv, "name", c.req.Name) {
				t.Errorf("the line does not name the object %q: %+v", c.req.Name, l.kv)
			}
		})
	}
}

func slicesContain(kv []any, key string, value any) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key && kv[i+1] == value {
			return true
		}
	}
	return false
}
