package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// discoveryOutage answers the first n discovery requests (GET /api and
// /apis: a RESTMapper's first look-up of any kind) with a 503, as an
// apiserver restarting or overloaded does; every other request reaches the
// apiserver.
type discoveryOutage struct {
	mu     sync.Mutex
	left   int
	failed int
}

// wrap is a rest.Config WrapTransport.
func (d *discoveryOutage) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && (r.URL.Path == "/api" || r.URL.Path == "/apis") && d.take() {
			body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
				`"message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}`
			return &http.Response{
				Status: "503 Service Unavailable", StatusCode: http.StatusServiceUnavailable,
				Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header:        http.Header{"Content-Type": {"application/json"}},
				Body:          io.NopCloser(strings.NewReader(body)),
				ContentLength: int64(len(body)),
				Request:       r,
			}, nil
		}
		return rt.RoundTrip(r)
	})
}

func (d *discoveryOutage) take() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.left == 0 {
		return false
	}
	d.left--
	d.failed++
	return true
}

func (d *discoveryOutage) answered503() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// TestServeOutlivesDiscoveryErrorsAtStart: serve's first look-up of a kind
// (each a discovery request) failing with a 503, the apiserver restarting or
// overloaded while the replica starts, ended serve, so its pod crash-looped,
// unlike serve's other start-up reads, which are retried for up to 60 s
// (internal/transient). Two such look-ups were not:
//   - the controller manager's, with the injector served (its cache
//     restricts the pods, Secrets and Services it watches, and looks up
//     whether each kind is namespaced): "creating the controller manager:
//     failed to determine if *v1.Pod is namespaced: failed to get restmapping:
//     failed to get server groups: the server is currently unable to handle
//     the request";
//   - the webhooks' caches registered before the manager starts
//     (webhooks.CachesSynced), the first look-up with the validator alone:
//     "validator: informer for v1.Namespace: failed to get server groups:
//     the server is currently unable to handle the request".
//
// Both are now retried the same way. The injector is not served in full
// here: serve registers its controllers under fixed names, once per process
// (TestServeWithoutMeshConfigCRD does).
func TestServeOutlivesDiscoveryErrorsAtStart(t *testing.T) {
	const ns = "fsm-system"
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// failing is env's config with the first three discovery requests
	// answered 503.
	failing := func() (*rest.Config, *discoveryOutage) {
		outage := &discoveryOutage{left: 3}
		cfg := rest.CopyConfig(env.Config)
		cfg.Wrap(outage.wrap)
		return cfg, outage
	}
	t.Run("manager with the injector's caches", func(t *testing.T) {
		cfg, outage := failing()
		o := &options{}
		o.addFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
		o.fsmNamespace = ns
		sf := &serveFlags{webhooks: []string{hookInjector}}
		if _, err := newManager(context.Background(), sf, o, cfg, newScheme(), logr.Discard()); err != nil {
			t.Fatal(err)
		}
		if n := outage.answered503(); n != 3 {
			t.Fatalf("discovery answered 503 %d times, want 3 (the manager looked no kind up?)", n)
		}
	})
	t.Run("validator", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cfg, outage := failing()
		o, done := serveValidator(ctx, t, cfg, ns, func(o *options) {
			o.keyPoolSize = 0
			o.caKeyAlgorithm = "ecdsa-p256"
			o.rootAutoRotateBefore = 0
		})
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		waitAnswers(t, hc, "https://127.0.0.1:"+strconv.Itoa(o.validatorPort)+fsmnames.ValidatorPath, done, "the validator")
		if n := outage.answered503(); n != 3 {
			t.Fatalf("discovery answered 503 %d times, want 3 (serve looked no kind up?)", n)
		}
	})
}
