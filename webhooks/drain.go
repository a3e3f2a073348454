package webhooks

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// Graceful drain. When the server's context ends (SIGTERM), every listener
// keeps serving for Options.ShutdownDrain before its graceful shutdown:
//
//   - /readyz and /readyz/<name> fail, so a replica stopped without a
//     preStop hook (or on a cluster older than 1.30, where the chart has
//     none) leaves its Services' endpoints while it still answers;
//   - every answer carries "Connection: close", so the apiserver drops each
//     keep-alive connection it reuses here right after its answer and dials
//     again, through the Service, a replica that stays.
//
// Only then does http.Server.Shutdown close the connections still idle.
// Closing an idle keep-alive connection races with the apiserver writing
// its next request on it ("write: broken pipe", a failed admission under
// failurePolicy Fail); the drain lets the load retire those connections
// one answer at a time first. http.Server.SetKeepAlivesEnabled(false) is
// not used: it closes every idle connection at once, the same race.

// DefaultShutdownDrain outlasts the chart's readiness probe (every 2 s, one
// failure marks the pod NotReady) plus endpoint propagation, for a SIGTERM
// no pod deletion preceded (a container stopped under the kubelet), and fits
// the chart's terminationGracePeriodSeconds (65) with the 5 s preStop sleep,
// up to 30 s (the longest timeoutSeconds) for answers in flight and the
// bootstrap Secret writer's 20 s flush.
const DefaultShutdownDrain = 8 * time.Second

// drainingBody is what /readyz answers while the listener drains.
const drainingBody = "shutting down: draining connections\n"

// closeWhenDraining makes h answer with "Connection: close" once ctx has
// ended: net/http then closes the connection after that answer.
func closeWhenDraining(ctx context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ctx.Err() != nil {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// unreadyWhenDraining fails every readiness check of h (/readyz and
// /readyz/...) with 503 once ctx has ended; liveness and metrics are
// answered as before, so the kubelet does not restart a draining process.
func unreadyWhenDraining(ctx context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ctx.Err() != nil && isReadyz(r.URL.Path) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(drainingBody))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func isReadyz(path string) bool {
	return path == "/readyz" || strings.HasPrefix(path, "/readyz/")
}

// awaitDrain returns once ctx has ended and then d has passed.
func awaitDrain(ctx context.Context, d time.Duration, what string, log logr.Logger) {
	<-ctx.Done()
	if d <= 0 {
		return
	}
	log.Info("draining "+what+" before shutdown", "drain", d)
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}
