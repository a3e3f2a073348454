// Package reviewhttp is the one request path of every webhook of this
// repository: Admission serves a controller-runtime admission.Handler,
// Conversion serves a Converter. Handlers keep only their decision; here,
// for every request and in this order:
//
//   - POST only (405), Content-Type application/json and no
//     Content-Encoding (415), a body (400):
//     answered with a plain HTTP status, since no apiserver sends these and
//     curl users and load balancers should see the mistake;
//   - at most MaxBodyBytes (413), decoded once and strictly (400), answered
//     in the review's own form (an AdmissionReview result, a
//     ConversionReview Failure);
//   - the handler, with panic recovery (controller-runtime's
//     admission.Webhook.Handle for admission, which also completes the
//     response; the same recovery here for conversion);
//   - the response echoes the request's uid and review version;
//   - fsm_webhooks_requests_total, fsm_webhooks_request_duration_seconds and
//     fsm_webhooks_requests_in_flight count it by webhook and result.
//
// Decoding: controller-runtime's admission.Webhook.ServeHTTP decodes through
// the apimachinery universal deserializer: one full encoding/json pass to
// find apiVersion/kind, then a second validating pass and a decode. For a
// 9 KB MeshConfig UPDATE that is 155 µs before any handler runs, more than
// the validator's whole 100 µs budget. Here the body is read once by
// go-json-experiment/json, whose defaults are what the apiserver's own
// decoder enforces: case-sensitive names, no duplicate names, valid UTF-8.
package reviewhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// MaxBodyBytes bounds every review body, admission and conversion alike.
// The apiserver refuses a request body over 3 MiB (its MaxRequestBodyBytes),
// so an AdmissionReview, which carries the object and the old object, stays
// below 2 × 3 MiB plus its envelope: controller-runtime's admission limit,
// for the same reason. A ConversionReview carries the objects of one read:
// one object for a get, a write or a watch event, the items of one list page
// for a list; at a few KB per MeshConfig (one per mesh) that is thousands of
// them.
const MaxBodyBytes = 7 << 20

// endpoint is what both review types share: the webhook's name (the metrics'
// webhook label) and the logger for refused requests.
type endpoint struct {
	webhook string
	log     logr.Logger
}

func newEndpoint(kind string) endpoint {
	return endpoint{log: logf.Log.WithName(kind)}
}

func (e *endpoint) name(webhook string) {
	e.webhook = webhook
	e.log = e.log.WithValues("webhook", webhook)
	// The failure results start at 0, so that rate() and the error-ratio
	// alert see the first failure.
	for _, r := range []string{ResultError, ResultBadRequest} {
		requests.WithLabelValues(webhook, r)
	}
}

// begin counts a request in flight; the returned func records its result
// and latency.
func (e *endpoint) begin() func(result *string) {
	start := time.Now()
	inFlight.WithLabelValues(e.webhook).Inc()
	return func(result *string) {
		inFlight.WithLabelValues(e.webhook).Dec()
		requests.WithLabelValues(e.webhook, *result).Inc()
		duration.WithLabelValues(e.webhook, *result).Observe(time.Since(start).Seconds())
	}
}

// read checks what every review request must be and returns its body. On
// failure it has answered: transport mistakes with a plain HTTP status, body
// problems through refuse, in the review's own form.
func (e *endpoint) read(w http.ResponseWriter, r *http.Request, refuse func(http.ResponseWriter, int, error)) ([]byte, bool) {
	if status, err := checkTransport(r); err != nil {
		e.log.V(1).Info("refusing a request no apiserver sends", "path", r.URL.Path, "status", status, "reason", err.Error())
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		http.Error(w, err.Error(), status)
		return nil, false
	}
	body, status, err := readBody(w, r)
	if err != nil {
		e.refused(r, status, err)
		refuse(w, status, err)
		return nil, false
	}
	return body, true
}

// refused logs a request refused for its body: no apiserver sends one, so it
// is worth an error line, as controller-runtime logs them.
func (e *endpoint) refused(r *http.Request, status int, err error) {
	e.log.Error(err, "refusing a malformed review request", "path", r.URL.Path, "status", status)
}

// checkTransport refuses what no apiserver sends: another method, another
// content type, a compressed body, no body.
func checkTransport(r *http.Request) (int, error) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, fmt.Errorf("webhook requests must be POST, got %s", r.Method)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type must be application/json, got %s", quoteOrNone(r.Header.Get("Content-Type")))
	}
	// Not decoded here (no apiserver compresses a request): refused by name
	// rather than reported as the compressed bytes' first invalid JSON
	// character ("invalid character '\x1f'" for gzip).
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported: send the review uncompressed", ce)
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return http.StatusBadRequest, errors.New("empty request body: expected an AdmissionReview or ConversionReview")
	}
	return 0, nil
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("%q", s)
}

var errTooLarge = fmt.Errorf("request body is larger than %d bytes", MaxBodyBytes)

// presizeMax bounds the Content-Length readBody reads to a buffer of that
// exact final size (readLength); a longer or unknown body goes through
// io.ReadAll.
const presizeMax = 1 << 20

// presizeFirst is the most readLength allocates before a body's bytes have
// arrived: about what net/http's and crypto/tls's buffers already cost per
// connection, and more than a MeshConfig review or a typical pod's.
const presizeFirst = 32 << 10

// readBody reads at most MaxBodyBytes. http.MaxBytesReader also makes the
// server close the connection after the answer instead of draining the rest.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	defer func() { _ = r.Body.Close() }()
	if r.ContentLength > MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, errTooLarge
	}
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= presizeMax {
		// The apiserver sends the length: a buffer of that size, not
		// io.ReadAll's doubling from 512 bytes (5% of the validator's CPU
		// on a MeshConfig).
		body, err = readLength(r.Body, int(n))
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, errTooLarge
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	case len(body) == 0:
		return nil, http.StatusBadRequest, errors.New("request body is empty")
	}
	return body, 0, nil
}

// readLength reads a body of announced length n. Its buffer follows what
// has arrived, never the claim alone: min(n, presizeFirst) bytes first
// (one allocation for a MeshConfig review), then doubling, never past n. A
// Content-Length is a few bytes any client in the cluster can send: sized
// from it at once, 1 MiB was held per connection until the read timeout for
// nothing sent, and a few hundred such connections reached the chart's
// memory limit.
func readLength(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, presizeFirst))
	for {
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			// Ended on a buffer's boundary: still short of n.
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == n {
			return buf, nil
		}
		grown := make([]byte, len(buf), min(n, 2*cap(buf)))
		copy(grown, buf)
		buf = grown
	}
}

// writeJSON writes a response review. encoding/json on purpose: responses
// are small, and its omitempty rules are the ones the k8s.io/api struct tags
// were written for.
func writeJSON(w http.ResponseWriter, status int, v any, log logr.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The connection is gone; nothing more can be written to it.
		log.V(1).Info("could not write the response", "error", err.Error())
	}
}
