package main

import (
	"context"
	"testing"
	"time"

	"github.com/spf13/pflag"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestServeKeyPoolOutlivesTheDrain: after SIGTERM serve's listeners keep
// admitting pods through the shutdown drain and their graceful shutdown,
// and the bootstrap Secret writer then flushes its records, each a
// certificate. The key pool stopped (and dropped its keys) at SIGTERM, so
// every one of those generated its key inline: RSA-2048, the default, on
// the admission path of a replica that is still answering. The pool must
// keep its keys until serve returns, and stop then.
func TestServeKeyPoolOutlivesTheDrain(t *testing.T) {
	const ns = "fsm-system"
	const poolSize = 4
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &options{}
	o.addFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
	o.fsmNamespace = ns
	o.webhookURLHost = "127.0.0.1"
	o.injectorPort, o.validatorPort, o.converterPort = freePort(t), freePort(t), freePort(t)
	o.metricsAddr, o.healthProbeAddr = "0", "0"
	o.keyPoolSize = poolSize
	o.caKeyAlgorithm = "ecdsa-p256"
	o.rootAutoRotateBefore = 0
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	const drain = 4 * time.Second
	sf := &serveFlags{webhooks: []string{hookValidator}, bindHost: "127.0.0.1", validateTrafficTgt: true, shutdownDrain: drain}
	done, started := make(chan error, 1), make(chan *webhooks.Server, 1)
	go func() { done <- serve(ctx, o, sf, env.Config, func(s *webhooks.Server) { started <- s }) }()

	// Serving: the validator ready in full (cert, caBundle, probe), so its
	// listener drains once ctx ends, and the pool full.
	deadline := time.Now().Add(60 * time.Second)
	var srv *webhooks.Server
	select {
	case srv = <-started:
	case err := <-done:
		t.Fatalf("serve returned before serving: %v", err)
	case <-time.After(time.Until(deadline)):
		t.Fatal("serve did not start within 60 s")
	}
	for (srv.Ready(ctx) != nil || pooledKeys(t) < poolSize) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := srv.Ready(ctx); err != nil {
		t.Fatalf("not ready 60 s after serve started: %v", err)
	}
	if n := pooledKeys(t); n < poolSize {
		t.Fatalf("the key pool holds %d keys 60 s after serve started, want %d", n, poolSize)
	}
	cancel()
	time.Sleep(drain / 4) // well inside the drain
	select {
	case err := <-done:
		t.Fatalf("serve returned before its drain ended: %v", err)
	default:
	}
	if n := pooledKeys(t); n < poolSize {
		t.Errorf("during the shutdown drain the key pool holds %d keys, want %d: every certificate issued now generates its key inline", n, poolSize)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30 s of its context's end")
	}
	// And stops with serve.
	// The pool stops on its own goroutines: a hang guard.
	deadline = time.Now().Add(30 * time.Second)
	for pooledKeys(t) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := pooledKeys(t); n != 0 {
		t.Errorf("30 s after serve returned the key pool holds %d keys, want 0 (stopped)", n)
	}
}

// pooledKeys is fsm_webhooks_keypool_size summed over algorithms.
func pooledKeys(t *testing.T) int {
	t.Helper()
	return int(gathered(t, "fsm_webhooks_keypool_size"))
}
