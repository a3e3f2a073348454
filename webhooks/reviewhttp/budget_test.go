package reviewhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestAnswerBudget: the apiserver's ?timeout= (whole seconds) leaves the
// handler a quarter of it, at most 2 s, to answer in.
func TestAnswerBudget(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  time.Duration
		ok    bool
	}{
		{"30s", 28 * time.Second, true},
		{"20s", 18 * time.Second, true},
		{"8s", 6 * time.Second, true},
		{"5s", 3750 * time.Millisecond, true},
		{"1s", 750 * time.Millisecond, true},
		{"", 0, false},
		{"0s", 0, false},
		{"-5s", 0, false},
		{"soon", 0, false},
	} {
		got, ok := AnswerBudget(tc.query)
		if got != tc.want || ok != tc.ok {
			t.Errorf("AnswerBudget(%q) = %s, %v; want %s, %v", tc.query, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHandlerDeadlineFromTimeout: the handler's context ends within the
// apiserver's timeout the request carries.
func TestHandlerDeadlineFromTimeout(t *testing.T) {
	var left time.Duration
	a := NewAdmission(admission.HandlerFunc(func(ctx context.Context, _ admission.Request) admission.Response {
		d, ok := ctx.Deadline()
		if ok {
			left = time.Until(d)
		}
		return admission.Allowed("")
	}))
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`
	req := httptest.NewRequest(http.MethodPost, "/x?timeout=10s", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"allowed":true`) {
		t.Fatalf("answer %s", rec.Body)
	}
	if left <= 7*time.Second || left > 8*time.Second {
		t.Errorf("handler deadline %s away, want 8 s (10 s less 2 s)", left)
	}
}
