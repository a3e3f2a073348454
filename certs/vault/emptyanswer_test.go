package vault

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// TestTokenLookupWithEmptyAnswer: a lookup-self answered 200 with no body
// (a proxy or load balancer in front of Vault misbehaving) is a failed
// lookup, retried and logged naming the call; it does not panic the token
// keeper, which runs in its own goroutine of serve.
func TestTokenLookupWithEmptyAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK) // no body
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portS)
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	zero := 0
	i, err := New(context.Background(), Options{Host: host, Port: port, Protocol: "http", Role: DefaultRole, Token: "t", MaxRetries: &zero, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	k := &keeper{i: i, backoff: tokenRetryMin}
	var wait time.Duration
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("the token keeper panicked on an empty lookup-self answer: %v", p)
			}
		}()
		wait = k.step(context.Background(), "t")
	}()
	if wait != tokenRetryMin {
		t.Errorf("after an empty lookup-self answer the next step is in %s, want the retry back-off %s", wait, tokenRetryMin)
	}
	if len(logged) == 0 || !strings.Contains(strings.Join(logged, "\n"), "auth/token/lookup-self") {
		t.Errorf("logged %q, want the failed lookup-self named", logged)
	}
}
