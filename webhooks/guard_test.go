package webhooks

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	reached := false
	h := guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached = true }))
	for _, tc := range []struct {
		name, method, contentType, body string
		want                            int
		wantInMessage                   string
		reach                           bool
	}{
		{"admission review", http.MethodPost, "application/json", `{"kind":"AdmissionReview"}`, http.StatusOK, "", true},
		{"json with charset", http.MethodPost, "application/json; charset=utf-8", `{}`, http.StatusOK, "", true},
		{"GET", http.MethodGet, "application/json", `{}`, http.StatusMethodNotAllowed, "must be POST, got GET", false},
		{"yaml body", http.MethodPost, "application/yaml", `a: b`, http.StatusUnsupportedMediaType, `got "application/yaml"`, false},
		{"no content type", http.MethodPost, "", `{}`, http.StatusUnsupportedMediaType, "got none", false},
		{"empty body", http.MethodPost, "application/json", ``, http.StatusBadRequest, "empty request body", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = false
			req := httptest.NewRequest(tc.method, "/validate", strings.NewReader(tc.body))
			if tc.body == "" {
				req.Body, req.ContentLength = http.NoBody, 0
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want || reached != tc.reach || !strings.Contains(rec.Body.String(), tc.wantInMessage) {
				t.Fatalf("status %d body %q reached %v; want %d containing %q reached %v",
					rec.Code, rec.Body.String(), reached, tc.want, tc.wantInMessage, tc.reach)
			}
		})
	}
}
