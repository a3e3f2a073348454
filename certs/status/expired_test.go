package status

import (
	"context"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestCheckReportsExpiredCA: `certs status` names a CA of the mesh bundle
// that has expired, beside what that does to the serving certs.
func TestCheckReportsExpiredCA(t *testing.T) {
	ctx := context.Background()
	ca := certstest.MustNew(t, certstest.Options{RootValidity: time.Hour})
	opts := webhooks.Options{Namespace: ns, MeshName: "fsm", Issuer: ca}
	notAfter := ca.Active().NotAfter
	at := notAfter.Add(time.Second)
	// No webhooks: nothing in the cluster is read.
	rep, err := check(ctx, opts, nil, nil, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	want := "CA " + ca.Active().Subject.CommonName + " expired at " + notAfter.UTC().Format(time.RFC3339)
	if rep.Healthy || len(rep.Problems) != 1 || rep.Problems[0] != want {
		t.Fatalf("healthy %v, problems %q; want only %q", rep.Healthy, rep.Problems, want)
	}
}

// TestCertInfoDaysLeft: whole days left, rounded down, as `certs status`
// shows them.
func TestCertInfoDaysLeft(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		left time.Duration
		want int
	}{{36 * time.Hour, 1}, {23 * time.Hour, 0}, {48 * time.Hour, 2}} {
		c := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(tc.left)}
		if got := certInfo(c, now).DaysLeft; got != tc.want {
			t.Errorf("%s left: DaysLeft = %d, want %d", tc.left, got, tc.want)
		}
	}
}
