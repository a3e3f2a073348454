package testenv

import (
	"net/http"
	"strings"
)

// HeldRequests holds every request of Method whose path contains PathPart
// until Release is closed (or the request's context ends), then sends it
// on to Next: an apiserver slow to answer those calls (APF queueing, the
// client's rate limiter). Held until the test says so rather than for a
// fixed time, a released request keeps all of its own timeout.
type HeldRequests struct {
	Next     http.RoundTripper
	Method   string
	PathPart string
	Release  <-chan struct{}
}

// RoundTrip implements http.RoundTripper.
func (h HeldRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == h.Method && strings.Contains(req.URL.Path, h.PathPart) {
		select {
		case <-h.Release:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return h.Next.RoundTrip(req)
}
