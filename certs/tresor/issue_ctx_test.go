package tresor

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
)

// TestIssueHonoursContext: Issue gives up at its context's deadline (the
// injector passes the admission's) when its key is not ready: an empty pool,
// or a key size that is not pooled and generated inline (seconds for RSA on
// a loaded node), instead of issuing a certificate for a request already
// abandoned.
func TestIssueHonoursContext(t *testing.T) {
	now := time.Now()
	root, err := certs.NewRootAuthority(certs.ECDSAP256, certs.RootCAValidity, now)
	if err != nil {
		t.Fatal(err)
	}
	data, err := newSecretData(root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Inspect(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: DefaultSecretName, ResourceVersion: "1",
		Labels: map[string]string{LabelManagedBy: ManagedByValue}}, Data: data}, now)
	if err != nil {
		t.Fatal(err)
	}

	// A key generation slower than anything the test waits for (a slow RSA
	// key on a busy node): it ends when the test does, or after a minute.
	// Issue returning before that returned without its key, however late
	// a starved machine woke it after the deadline.
	realKey, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	const keyAfter = time.Minute
	testEnded := make(chan struct{})
	t.Cleanup(func() { close(testEnded) })
	slow := func(certs.KeyAlgorithm) (crypto.Signer, error) {
		select {
		case <-testEnded:
		case <-time.After(keyAfter):
		}
		return realKey, nil
	}
	keys, err := keypool.NewSet(keypool.Options{Algorithm: certs.ECDSAP256, Size: 1, Generate: slow, Busy: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	i := &Issuer{store: Store{Namespace: "fsm-system"}, keys: keys, log: logr.Discard()}
	i.state.Store(st)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := i.Issue(ctx, certs.Request{CommonName: "x.sidecar.sa.ns.cluster.local", DNSNames: []string{"x.sidecar.sa.ns.cluster.local"},
		Validity: time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256})
	took := time.Since(start)
	if took > keyAfter/2 {
		t.Errorf("Issue with a 200ms deadline returned after %s (err %v, certificate issued: %v): the context is not honoured", took.Round(time.Millisecond), err, c != nil)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Issue past its deadline returned err=%v, want context.DeadlineExceeded", err)
	}
}
