package converter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// levelSink records each V(0) line with whether it was logged with Error.
type levelSink struct {
	mu    *sync.Mutex
	lines *[]string
}

func (s levelSink) Init(logr.RuntimeInfo)  {}
func (s levelSink) Enabled(level int) bool { return level == 0 }
func (s levelSink) Info(_ int, msg string, kv ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.lines = append(*s.lines, "info: "+msg+" "+fmt.Sprint(kv...))
}

func (s levelSink) Error(err error, msg string, kv ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.lines = append(*s.lines, "error: "+msg+": "+err.Error()+" "+fmt.Sprint(kv...))
}
func (s levelSink) WithValues(...any) logr.LogSink { return s }
func (s levelSink) WithName(string) logr.LogSink   { return s }

// TestConversionFailureLoggedAsError: a failed conversion is result "error"
// in fsm_webhooks_requests_total (FSMWebhooksAdmissionErrors, whose
// description sends the reader to the servers' logs) and fails the client's
// read of the MeshConfig; it was logged at info, so a search of the logs for
// errors found nothing.
func TestConversionFailureLoggedAsError(t *testing.T) {
	for _, tc := range []struct {
		name    string
		desired string
		object  string
		want    string
	}{
		{"desired version not served", "config.flomesh.io/v9", `{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig"}`, `desiredAPIVersion "config.flomesh.io/v9" is not served`},
		{"object of another group", "config.flomesh.io/v1alpha3", `{"apiVersion":"example.com/v1","kind":"MeshConfig","metadata":{"name":"m"}}`, `apiVersion "example.com/v1" is not in group`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			h := NewHandler(meshScheme(t), group, logr.New(levelSink{mu: &sync.Mutex{}, lines: &lines}))
			resp := h.Convert(context.Background(), &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: tc.desired, Objects: []runtime.RawExtension{{Raw: []byte(tc.object)}}})
			if resp.Result.Status == "Success" {
				t.Fatal("converted")
			}
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("logged %q, want one error line saying %q", lines, tc.want)
			}
		})
	}
}
