package vault

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestDeadlineNotReportedUnreachable: a Vault that answers, but sealed (503,
// retried with a back-off), is not called unreachable when the caller's
// deadline (an admission's) runs out first.
func TestDeadlineNotReportedUnreachable(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Sys().SealWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = i.Issue(dctx, certs.Request{CommonName: "x", Validity: time.Hour, Usage: certs.UsageServer})
	took := time.Since(start)
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if err == nil || took > 3*time.Second {
		t.Fatalf("Issue from a sealed Vault with a 700ms deadline returned after %s: %v", took, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "no usable answer to pki/cert/ca before the deadline") {
		t.Errorf("want a deadline, not an unreachable server: %v", err)
	}
}
