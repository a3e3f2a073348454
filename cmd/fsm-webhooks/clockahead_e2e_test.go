package main

import (
	"context"
	"fmt"
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

// TestServeOnAClockAheadIsCalledAtOnce: serve on a node whose clock runs 3
// minutes ahead of the cluster's, on a first install (no rotation, so no
// clock check): it creates the tresor root and signs the validator's
// serving cert with that clock. Backdated a minute, both were valid in the
// cluster only 2 minutes later, and the apiserver could not call the
// webhook meanwhile (here serve's own handshake, made as the apiserver makes
// it, refused to register it; on a real node, whose one clock serve's
// handshake shares, the apiserver refused the calls: every admission of a
// failurePolicy=Fail webhook failed). Backdated by certs.ClockSkew, the
// apiserver's call is answered within seconds of start.
func TestServeOnAClockAheadIsCalledAtOnce(t *testing.T) {
	const ns = "ahead-system"
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The node's clock, 3 minutes ahead. Restored after serve has stopped
	// (cleanups run last registered first).
	localClock = func() time.Time { return time.Now().Add(3 * time.Minute) }
	t.Cleanup(func() { localClock = time.Now })
	_, done := serveHooks(ctx, t, env.Config, ns, []string{hookValidator}, func(o *options, _ *serveFlags) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = 0
	})

	bad, err := validator.BaseMeshConfig(ns, fsmnames.MeshConfigName)
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(bad.Object, "loud", "spec", "sidecar", "logLevel"); err != nil {
		t.Fatal(err)
	}
	// Well under the 2 minutes the cluster took to accept the minute-
	// backdated certificates.
	poll.Until(t, 45*time.Second, 500*time.Millisecond, "a bad MeshConfig denied by the validator through the apiserver", func() error {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		err := env.Client.Create(ctx, bad.DeepCopy())
		switch {
		case err == nil:
			// Stored before the validator was registered: gone again.
			if err := env.Client.Delete(ctx, bad.DeepCopy()); err != nil {
				t.Fatal(err)
			}
			return fmt.Errorf("bad MeshConfig stored: the validator is not registered yet")
		case !strings.Contains(err.Error(), "admission webhook") || !strings.Contains(err.Error(), `spec.sidecar.logLevel: Unsupported value: "loud"`):
			vwc, gerr := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, fsmnames.ValidatingConfigurationName("fsm"), metav1.GetOptions{})
			registered := gerr == nil && len(vwc.Webhooks) > 0 && len(vwc.Webhooks[0].ClientConfig.CABundle) > 0
			return fmt.Errorf("not denied by the validator (configuration registered with a caBundle: %v): %v", registered, err)
		}
		return nil
	})
}
