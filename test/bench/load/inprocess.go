package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// The in-process handler's images (serve's are the injector's defaults).
const (
	inProcessSidecarImage     = "flomesh/pipy:1.5.14"
	inProcessInitImage        = "flomesh/fsm-sidecar-init:1.5.1"
	inProcessHealthcheckImage = "flomesh/fsm-healthcheck:1.5.1"
)

// inProcess is the injector handler run inside this process (-in-process):
// not what ships. Its key pool holds a key for every pod before the clock
// starts and its client is not rate limited, so it measures the handler and
// the apiserver, not serve's defaults; in exchange it can split the
// handler's time into its Secret write and its own work.
type inProcess struct {
	timed *timedHandler
	pool  int
}

// label says what runs, naming every setting that differs from what ships.
func (p *inProcess) label() string {
	return fmt.Sprintf("injector: IN-PROCESS handler, NOT what ships: key pool of the CA's algorithm pre-filled with %d keys before the clock starts (BURST), its client at 5000 QPS/5000 burst, no validator or converter; caches and Secret controller as serve sets them up", p.pool)
}

// measure returns a function reporting the handler's latency over the phase
// it brackets.
func (p *inProcess) measure(context.Context) (func(result) []string, error) {
	p.timed.take()
	return func(result) []string {
		total, own := p.timed.take()
		return []string{fmt.Sprintf("injector handler (in-process): p50 %.2f ms  p99 %.2f ms over %d admissions; without its Secret write: p50 %.2f ms  p99 %.2f ms",
			ms(pct(total, 50)), ms(pct(total, 99)), len(total), ms(pct(own, 50)), ms(pct(own, 99)))}
	}, nil
}

func (p *inProcess) stop() error { return nil }

// startInProcess runs the handler, the caches and the adoption controller in
// this process, serving on a loopback port registered by URL.
func startInProcess(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, cl client.Client, c config) (*inProcess, error) {
	// The handler's bootstrap keys are the injector's default, ECDSA P-256;
	// the test CA pre-fills only its own algorithm's pool, so a pre-filled
	// RSA pool would cost minutes of key generation for keys no admission
	// takes. ECDSA P-256 keys cost ~0.05 ms each, pooled or not.
	pool := keypool.DefaultSize
	if c.alg == injector.DefaultBootstrapKeyAlgorithm {
		pool = c.meshedPods + 64
	}
	issuer, err := certstest.New(ctx, certstest.Options{Algorithm: c.alg, PoolSize: pool})
	if err != nil {
		return nil, err
	}
	certDir, port, err := servingCert(issuer)
	if err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		_ = os.RemoveAll(certDir)
	}()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme,
		Cache:         cache.Options{ByObject: injector.CacheByObject()},
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	if err != nil {
		return nil, err
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: "fsm"}); err != nil {
		return nil, err
	}
	// The webhook gets its own client, as in a cluster where it is another
	// process.
	webhookClient, err := client.NewWithWatch(rest.CopyConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	h, err := injector.NewHandler(injector.Options{
		Client: writeTimer(webhookClient), Pods: mgr.GetCache(), Namespaces: mgr.GetCache(), Issuer: issuer,
		MeshName: "fsm", FSMNamespace: "fsm-system",
		SidecarImage: inProcessSidecarImage, InitImage: inProcessInitImage, HealthcheckImage: inProcessHealthcheckImage,
	})
	if err != nil {
		return nil, err
	}
	timed := &timedHandler{Handler: h}
	mgr.GetWebhookServer().Register(fsmnames.InjectorPath, reviewhttp.NewAdmission(timed))
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("manager cache did not sync")
	}
	if err := mgr.GetCache().Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{}); err != nil {
		return nil, err
	}
	bundle, _ := issuer.CABundle(ctx)
	if err := register(ctx, cl, port, bundle); err != nil {
		return nil, err
	}
	return &inProcess{timed: timed, pool: pool}, nil
}

// timedHandler records how long the injector takes per admission, and how
// much of that was the bootstrap Secret's write to the apiserver (writeTimer
// adds it up through the request context).
type timedHandler struct {
	admission.Handler
	mu     sync.Mutex
	total  []time.Duration
	writes []time.Duration
}

type writeTimeKey struct{}

func (t *timedHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	var write time.Duration
	start := time.Now()
	resp := t.Handler.Handle(context.WithValue(ctx, writeTimeKey{}, &write), req)
	d := time.Since(start)
	t.mu.Lock()
	t.total = append(t.total, d)
	t.writes = append(t.writes, write)
	t.mu.Unlock()
	return resp
}

func (t *timedHandler) take() (total, withoutWrite []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	total = t.total
	for i, d := range t.total {
		withoutWrite = append(withoutWrite, d-t.writes[i])
	}
	t.total, t.writes = nil, nil
	return total, withoutWrite
}

// writeTimer wraps the injector's client so each create's duration is added
// to the admission it belongs to.
func writeTimer(c client.WithWatch) client.Client {
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			start := time.Now()
			err := c.Create(ctx, obj, opts...)
			if d, ok := ctx.Value(writeTimeKey{}).(*time.Duration); ok {
				*d += time.Since(start)
			}
			return err
		},
	})
}

func servingCert(issuer *certstest.CA) (string, int, error) {
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		return "", 0, err
	}
	c, err := issuer.Authority().Issue(certs.Request{
		CommonName: "127.0.0.1", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour, Usage: certs.UsageServer,
	}, key, nil, time.Now())
	if err != nil {
		return "", 0, err
	}
	dir, err := os.MkdirTemp("", "fsm-load-")
	if err != nil {
		return "", 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), c.CertPEM, 0o600); err != nil {
		return "", 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), c.KeyPEM, 0o600); err != nil {
		return "", 0, err
	}
	ports, err := freeport.LoopbackN(1)
	if err != nil {
		return "", 0, err
	}
	return dir, ports[0], nil
}

func register(ctx context.Context, cl client.Client, port int, bundle []byte) error {
	// The injector's own configuration, as serve registers it by URL.
	reg := injector.Registration("fsm", fsmNamespace)
	return cl.Create(ctx, webhooks.NewMutating(reg.Mutating, webhooks.Endpoint{URLHost: "127.0.0.1", Port: port}, reg.Path, bundle))
}

func (p *inProcess) regime() string { return regime(true, nil) }
