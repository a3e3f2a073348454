package webhooks

import (
	"mime"
	"net/http"
)

// guard answers requests no apiserver sends with a plain HTTP status before
// the admission or conversion handler sees them: wrong method 405, a body
// that is not JSON 415, no body 400. controller-runtime would answer them with
// HTTP 200 and an error inside a review, which hides the mistake from curl
// users and load balancers' health checks alike.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "webhook requests must be POST, got "+r.Method, http.StatusMethodNotAllowed)
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			http.Error(w, "Content-Type must be application/json, got "+quoteOrNone(r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
			return
		}
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			http.Error(w, "empty request body: expected an AdmissionReview or ConversionReview", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return `"` + s + `"`
}
