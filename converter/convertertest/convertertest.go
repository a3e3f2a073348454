// Package convertertest serves the converter to a test apiserver the way
// `fsm-webhooks serve` does: a webhooks.Server with converter.Registration(),
// the handler behind reviewhttp.NewConversion, a serving cert from a test
// mesh CA in its Secret, and the MeshConfig CRD's spec.conversion written by
// the server's own reconciling (after its TLS handshake check), never by the
// test. What the converter tests prove about the CRD stanza is therefore what
// production does.
package convertertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Namespace is the fsm namespace the converter's serving-cert Secret lives in.
const Namespace = "fsm-system"

// readyTimeout covers issuing the serving cert, the handshake check, the CRD
// update and the apiserver picking the new stanza up on a loaded machine.
const readyTimeout = time.Minute

// Converter is a running converter.
type Converter struct {
	// Server is the serving layer, as serve builds it.
	Server *webhooks.Server
	// CA is the mesh CA that issued the serving cert.
	CA *certstest.CA

	cancel context.CancelFunc
	done   chan error
}

// Webhook is the converter's webhooks.Webhook as serve builds it (see
// cmd/fsm-webhooks/serve.go), listening on port.
func Webhook(scheme *runtime.Scheme, port int, log logr.Logger) webhooks.Webhook {
	reg := converter.Registration()
	return webhooks.Webhook{
		Name: "converter", Port: port, ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
		Registration: reg,
		Handlers: map[string]http.Handler{
			reg.Path: reviewhttp.NewConversion(converter.NewHandler(scheme, v1alpha3.GroupVersion.Group, log)).Named("converter"),
		},
	}
}

// Start serves the converter for env, whose apiserver must have the
// MeshConfig CRD, registered by URL on 127.0.0.1 (as `local` and
// --webhook-url-host do), and returns once the server reports ready (the CRD
// converts through it with a caBundle that verifies the served cert) and the
// apiserver has been seen converting through it. scheme must hold the three
// MeshConfig versions. The server stops when the test ends.
func Start(t testing.TB, env *testenv.Env, scheme *runtime.Scheme, log logr.Logger) *Converter {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", Namespace, err)
	}
	ca, err := certstest.New(ctx, certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := webhooks.New(webhooks.Options{
		Config:         env.Config,
		Namespace:      Namespace,
		MeshName:       "fsm",
		WebhookURLHost: "127.0.0.1",
		BindHost:       "127.0.0.1",
		Issuer:         ca,
		// Faster than production's 10 s so a repaired stanza shows in
		// seconds; what is reconciled is the same.
		ResyncInterval: time.Second,
		SettleDelay:    time.Second,
		Log:            log.WithName("webhooks"),
	}, []webhooks.Webhook{Webhook(scheme, port, log.WithName("converter"))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Converter{Server: srv, CA: ca, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- srv.Start(runCtx) }()
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("converter server: %v", err)
		}
	})
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitConverting(ctx, env.Client); err != nil {
		t.Fatal(err)
	}
	return c
}

// Stop stops the server and waits until it has; later calls return nil.
// The CRD keeps the stanza: removing it is the uninstall's job.
func (c *Converter) Stop() error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("did not stop within 30s")
	}
}

func (c *Converter) waitReady(ctx context.Context) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-c.done:
			return false, fmt.Errorf("converter server stopped before it was ready: %w", err)
		default:
		}
		last = c.Server.Ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("converter not ready: %w (last: %v)", err, last)
	}
	return nil
}

// probeObject is a minimal valid v1alpha3 MeshConfig with data v1alpha2
// cannot hold (misc.repoServerImage).
var probeObject = []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig",` +
	`"metadata":{"name":"conversion-ready","namespace":"` + Namespace + `"},` +
	`"spec":{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"IfNotPresent"},` +
	`"misc":{"repoServerImage":"not-the-default:1"},"connector":{"lb":{},"DO_NOT_EDIT_viaGateway":"","viaGateway":{` +
	`"clusterIP":"","externalIP":"","ingressAddr":"","ingressHTTPPort":0,"ingressGRPCPort":0,` +
	`"egressAddr":"","egressHTTPPort":0,"egressGRPCPort":0}}}}`)

// waitConverting waits until the apiserver uses the webhook (CRD changes
// reach the request path asynchronously): a v1alpha3 object read as
// v1alpha2 then carries the v1alpha3-fields annotation, which only the
// converter writes.
func waitConverting(ctx context.Context, c client.Client) error {
	probe := &unstructured.Unstructured{}
	if err := probe.UnmarshalJSON(probeObject); err != nil {
		return fmt.Errorf("the conversion probe MeshConfig: %w", err)
	}
	if err := c.Create(ctx, probe); err != nil {
		return fmt.Errorf("creating the conversion probe MeshConfig: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetAPIVersion(fsmnames.ConfigGroup + "/v1alpha2")
		got.SetKind("MeshConfig")
		if err := c.Get(ctx, client.ObjectKeyFromObject(probe), got); err != nil {
			return false, nil
		}
		_, ok := got.GetAnnotations()[lossless.AnnotationV1Alpha3Fields]
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("the apiserver never converted through the converter: %w", err)
	}
	if err := c.Delete(ctx, probe); err != nil {
		return fmt.Errorf("deleting the conversion probe MeshConfig: %w", err)
	}
	return nil
}
