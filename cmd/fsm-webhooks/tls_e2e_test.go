package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestServeTLS13Only: with --tls-min-version=VersionTLS13 the webhook
// listeners refuse a TLS 1.2 client, and the apiserver still reaches them:
// a bad MeshConfig written through it is denied by our validator.
func TestServeTLS13Only(t *testing.T) {
	const ns = "fsm-system"
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	o, done := serveHooks(ctx, t, env.Config, ns, []string{hookValidator}, func(o *options, sf *serveFlags) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = 0
		sf.tlsMinVersion = "VersionTLS13"
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.validatorPort))
	dial := func(maxVersion uint16) (tls.ConnectionState, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
			Config: &tls.Config{MaxVersion: maxVersion, InsecureSkipVerify: true}} //nolint:gosec // the version is under test, not the peer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState(), nil
	}

	bad, err := validator.BaseMeshConfig(ns, fsmnames.MeshConfigName)
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(bad.Object, "loud", "spec", "sidecar", "logLevel"); err != nil {
		t.Fatal(err)
	}
	const want = `spec.sidecar.logLevel: Unsupported value: "loud"`
	poll.Until(t, 3*time.Minute, 500*time.Millisecond, "a bad MeshConfig denied by the validator through the apiserver", func() error {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		err := env.Client.Create(ctx, bad.DeepCopy())
		switch {
		case err == nil:
			t.Fatal("bad MeshConfig stored: the validating webhook was not registered, or did not deny it")
		case !strings.Contains(err.Error(), want):
			return fmt.Errorf("not yet denied by the validator: %v", err)
		}
		return nil
	})

	state, err := dial(0)
	if err != nil {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(state.Version))
	}
	// The listener's alert: "remote error: tls: protocol version not supported".
	if _, err = dial(tls.VersionTLS12); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 client: %v; want the listener's protocol version alert", err)
	}
}
