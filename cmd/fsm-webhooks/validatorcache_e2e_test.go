package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// waitAnswers waits up to 90 s until url answers hc over TLS, failing t if
// serve stops (done) or what never answers; it returns the check, for
// later use.
func waitAnswers(t *testing.T, hc *http.Client, url string, done <-chan error, what string) func() error {
	t.Helper()
	answers := func() error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	for deadline := time.Now().Add(90 * time.Second); answers() != nil; time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", what, answers())
		}
	}
	return answers
}

// getCounter counts GET requests whose path ends with a suffix, over every
// transport a rest.Config makes (wrap).
type getCounter struct {
	suffix string
	mu     sync.Mutex
	n      int
}

// wrap is a rest.Config WrapTransport: each transport built from the
// config (one per client) gets its own counting round tripper.
func (c *getCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, c.suffix) {
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// roundTripFunc is an http.RoundTripper made of a function: the test
// transports wrapping a rest.Config's.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *getCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *getCounter) reset() {
	c.mu.Lock()
	c.n = 0
	c.mu.Unlock()
}

// freePort is a loopback port for a listener serve opens. Not a port of a
// listener just closed: the kernel hands one out again at once, and serve
// refuses an --injector-port, --validator-port and --converter-port that
// do not differ (1 in 2000 triples on Linux 6); freeport never repeats one
// in this process.
func freePort(t *testing.T) int { return freeport.Must(t) }

// serveValidator runs `serve` with the validator only, on free local ports,
// in the fsm namespace ns, with set applied to its defaults, until the test
// ends. done receives what serve returned.
func serveValidator(ctx context.Context, t *testing.T, cfg *rest.Config, ns string, set func(*options)) (o *options, done <-chan error) {
	t.Helper()
	return serveHooks(ctx, t, cfg, ns, []string{hookValidator}, func(o *options, _ *serveFlags) { set(o) })
}

// serveHooks is serveValidator for the webhooks named by hooks; set may
// change serve's flags too.
func serveHooks(ctx context.Context, t *testing.T, cfg *rest.Config, ns string, hooks []string, set func(*options, *serveFlags)) (o *options, done <-chan error) {
	t.Helper()
	o = &options{}
	o.addFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
	o.fsmNamespace = ns
	o.webhookURLHost = "127.0.0.1"
	o.injectorPort, o.validatorPort, o.converterPort = freePort(t), freePort(t), freePort(t)
	o.metricsAddr, o.healthProbeAddr = "0", "0"
	sf := &serveFlags{webhooks: hooks, bindHost: "127.0.0.1", validateTrafficTgt: true}
	set(o, sf)
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if err := sf.validate(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	errc, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(stopped)
		errc <- serve(ctx, o, sf, cfg, nil)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(60 * time.Second):
			t.Log("serve did not stop within 60 s")
		}
	})
	return o, errc
}

// TestValidatorReadsFromCache: serve's validator reads the mesh's
// MeshConfig (the feature flags of the Plugin/AccessCert kinds) and FSM's
// policy kinds as unstructured objects through mgr.GetClient(). Without
// client.CacheOptions.Unstructured that client reads them live, so every
// such admission was a GET against the apiserver, through the controllers'
// rate limiter, while the MeshConfig informer readiness waits for went
// unread. Five Plugin admissions must make no live GET of the MeshConfig.
func TestValidatorReadsFromCache(t *testing.T) {
	const ns = "fsm-system"
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	counter := &getCounter{suffix: "/namespaces/" + ns + "/meshconfigs/" + fsmnames.MeshConfigName}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(counter.wrap)

	o, done := serveValidator(ctx, t, cfg, ns, func(o *options) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = 0
	})

	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
		`"kind":{"group":"plugin.flomesh.io","version":"v1alpha1","kind":"Plugin"},` +
		`"resource":{"group":"plugin.flomesh.io","version":"v1alpha1","resource":"plugins"},` +
		`"name":"p1","namespace":"default","operation":"CREATE","userInfo":{},` +
		`"object":{"apiVersion":"plugin.flomesh.io/v1alpha1","kind":"Plugin","metadata":{"name":"p1","namespace":"default"},"spec":{"priority":1,"script":"x"}}}}`)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath)
	post := func() (string, error) {
		resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return string(b), fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		var rv struct {
			Response struct {
				UID     string `json:"uid"`
				Allowed bool   `json:"allowed"`
				Status  *struct {
					Code int32 `json:"code"`
				} `json:"status"`
			} `json:"response"`
		}
		if err := json.Unmarshal(b, &rv); err != nil || rv.Response.UID != "u1" {
			return string(b), fmt.Errorf("bad review %s: %v", b, err)
		}
		if rv.Response.Status != nil && rv.Response.Status.Code >= 500 {
			return string(b), fmt.Errorf("server error %s", b)
		}
		return string(b), nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if _, err := post(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("validator never answered: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Let the cache settle, then count.
	time.Sleep(time.Second)
	counter.reset()
	const n = 5
	for i := 0; i < n; i++ {
		if out, err := post(); err != nil {
			t.Fatalf("admission %d: %v (%s)", i, err, out)
		}
	}
	if got := counter.get(); got != 0 {
		t.Errorf("%d Plugin admissions made %d live GETs of MeshConfig %s/%s: the validator's Reader (mgr.GetClient()) does not serve unstructured objects from the cache it registers (client.CacheOptions.Unstructured unset)",
			n, got, ns, fsmnames.MeshConfigName)
	}
}
