package vault

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// TestTokenKeeperStopsQuietly: serve stopping while the token keeper waits
// on Vault (a lookup-self, a renew-self) cuts the call short. That is no
// failure: no error line, and the token is not reported unrenewable.
func TestTokenKeeperStopsQuietly(t *testing.T) {
	for _, path := range []string{"/v1/auth/token/lookup-self", "/v1/auth/token/renew-self"} {
		t.Run(path, func(t *testing.T) {
			entered := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == path {
					// Read first: the server notices the caller hang up
					// only once the body is consumed.
					_, _ = io.Copy(io.Discard, r.Body)
					close(entered)
					select { // Vault slow; the caller gives up
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
					return
				}
				// A renewable token with a TTL: the keeper goes on to renew it.
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":{"ttl":3600,"renewable":true,"expire_time":"2099-01-01T00:00:00Z","creation_ttl":3600}}`))
			}))
			defer srv.Close()
			host, portS, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
			port, _ := strconv.Atoi(portS)
			var mu sync.Mutex
			var errLines []string
			log := funcr.New(func(_, args string) {
				mu.Lock()
				defer mu.Unlock()
				if !strings.HasPrefix(args, `"level"=`) {
					errLines = append(errLines, args)
				}
			}, funcr.Options{})
			zero := 0
			i, err := New(context.Background(), Options{Host: host, Port: port, Protocol: "http", Role: DefaultRole, Token: "t", MaxRetries: &zero, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			k := &keeper{i: i, backoff: tokenRetryMin}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				k.step(ctx, "t")
			}()
			<-entered
			stop() // serve returning
			<-done
			mu.Lock()
			defer mu.Unlock()
			if len(errLines) > 0 {
				t.Errorf("error lines: %q", errLines)
			}
		})
	}
}
