package certmanager

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCABundleWaitingForLearnCAHonoursContext: while one caller learns the
// CA from an init-cert that the issuer is slow to sign, another CABundle
// caller (a metrics scrape with its few seconds, a caBundle reconcile) gives
// up at its own deadline instead of waiting for the first caller's request.
func TestCABundleWaitingForLearnCAHonoursContext(t *testing.T) {
	cm := newFakeClientset() // nobody signs
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: fakeNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	firstCtx, cancelFirst := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFirst()
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, _ = i.CABundle(firstCtx)
	}()
	// Let the first caller take the learning lock and create its init-cert.
	deadline := time.Now().Add(30 * time.Second)
	for len(requestedNames(t, cm)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first caller never asked for an init-cert")
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = i.CABundle(ctx)
	took := time.Since(start)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CABundle while another caller learns the CA: err = %v, want its own deadline exceeded", err)
	}
	if took > 10*time.Second { // the first caller waits a minute
		t.Errorf("CABundle with a 300ms deadline returned after %s: it waited for the other caller's init-cert", took.Round(time.Millisecond))
	}
	cancelFirst()
	<-firstDone
}
