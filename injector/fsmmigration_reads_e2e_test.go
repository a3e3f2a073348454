package injector_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// getCounter counts the GETs of single objects made through a rest.Config,
// by path (/api/v1/namespaces/ns/pods/name).
type getCounter struct {
	mu   sync.Mutex
	gets map[string]int
}

func countGETs(cfg *rest.Config) (*rest.Config, *getCounter) {
	c := &getCounter{gets: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return promhttp.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && r.URL.Query().Get("watch") == "" {
				c.mu.Lock()
				c.gets[r.URL.Path]++
				c.mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg, c
}

// of is the GETs of the objects of kind (pods, secrets) in ns named by
// names, summed.
func (c *getCounter) of(ns, kind string, names ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, name := range names {
		n += c.gets["/api/v1/namespaces/"+ns+"/"+kind+"/"+name]
	}
	return n
}

// fsmInjected creates n pods as FSM's injector leaves them: each labelled
// with its uuid and mounting its bootstrap Secret, which exists but lacks
// the fsm-proxy-uuid label ours carry (so no Secret cache of ours holds it). It
// returns the pods' and the Secrets' names.
func fsmInjected(ctx context.Context, t *testing.T, cl client.Client, ns string, n int) (pods, secrets []string) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("fsm-pod-uuid-%d", i)
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: injector.BootstrapSecretName(id),
			// FSM's labels (fsm-reference/injector/*/fsm-bootstrap-secret.json):
			// no fsm-proxy-uuid.
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, "app.kubernetes.io/version": ""}}}
		if err := cl.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		p := relabelMountingPod(fmt.Sprintf("fsm-pod-%d", i), ns, id)
		if err := cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		pods, secrets = append(pods, p.Name), append(secrets, s.Name)
	}
	return pods, secrets
}

// TestOrphanSweepReadsFSMPodsOnce: during a migration from FSM, every
// FSM-injected pod carries fsm-proxy-uuid, but FSM's bootstrap Secrets lack
// our labels and are not in the Secret cache. Before deleting an orphan
// (a pod refused after our webhook, retried by its ReplicaSet), the sweep
// checks that no pod mounts it; it read every FSM pod of the namespace in
// full, once per orphan and per replica (500 FSM pods, a quota-blocked
// Deployment: 500 pod GETs per retried pod). An FSM pod's own Secret
// existing says what it mounts, as for our pods whose Secret is cached: one
// metadata read of that Secret, learnt once per replica, not per orphan.
// The orphans still go, and FSM's Secrets stay.
func TestOrphanSweepReadsFSMPodsOnce(t *testing.T) {
	const ns, grace, n = "fsm-migration-sweep", 2 * time.Second, 5
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	podNames, fsmSecrets := fsmInjected(ctx, t, env.Client, ns, n)

	cfg, counted := countGETs(env.Config)
	mgr := secretControllerManagerFor(t, cfg, env.Client.Scheme(),
		injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)

	// Orphans one after the other, so that the second finds what the first
	// learnt (concurrent ones may each read).
	for i, id := range []string{"orphan-1", "orphan-2"} {
		orphan := relabelSecret(ns, id)
		if err := env.Client.Create(ctx, orphan); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*grace+10*time.Second, "orphan "+orphan.Name+" to be deleted", func() (bool, error) {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(orphan), &corev1.Secret{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		if got := counted.of(ns, "pods", podNames...); got != 0 {
			t.Errorf("after orphan %d: %d full GET(s) of the %d FSM pods; want 0 (their own Secrets exist)", i+1, got, n)
		}
		if got := counted.of(ns, "secrets", fsmSecrets...); got != n {
			t.Errorf("after orphan %d: %d GET(s) of the %d FSM Secrets; want %d (each once per replica)", i+1, got, n, n)
		}
	}
	for _, name := range fsmSecrets {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}); err != nil {
			t.Errorf("FSM's Secret %s: %v", name, err)
		}
	}
}

// TestRepairOfFSMPodsReadsSecretOnly: at each replica start the writer
// queues every cached meshed pod whose Secret it does not hold; FSM-injected
// pods are all of them (FSM's Secrets lack our labels). Their repair read
// the pod in full, then the Secret: two GETs per FSM pod per replica start
// (100,000 for 50,000 FSM pods) on the admission client's budget. The
// Secret existing leaves nothing to write whatever the pod: read it first,
// its metadata only, and stop there.
func TestRepairOfFSMPodsReadsSecretOnly(t *testing.T) {
	const ns, n = "fsm-migration-repair", 5
	env := startCoreEnv(t)
	ctx := context.Background()
	// FSM's pods run in a namespace of the mesh (the writer leaves a pod
	// in any other alone, reading nothing).
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{fsmnames.MonitoredByLabel: meshName}}}); err != nil {
		t.Fatal(err)
	}
	podNames, fsmSecrets := fsmInjected(ctx, t, env.Client, ns, n)

	cfg, counted := countGETs(env.Config)
	admissionClient, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Client.Scheme(), Logger: log, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{ByObject: injector.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := injector.NewHandler(injector.Options{
		Client: admissionClient, Pods: mgr.GetCache(), Namespaces: mgr.GetClient(), Issuer: refusingIssuer{t}, MeshName: meshName, FSMNamespace: fsmNamespace, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: meshName, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, RepairDelay: 100 * time.Millisecond, Logger: log}); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)

	eventually(t, 20*time.Second, "every FSM pod's repair to read its Secret", func() (bool, error) {
		return counted.of(ns, "secrets", fsmSecrets...) >= n, nil
	})
	time.Sleep(500 * time.Millisecond) // a repair reading the pod after the Secret
	if got := counted.of(ns, "pods", podNames...); got != 0 {
		t.Errorf("repairs read the %d FSM pods %d time(s) in full; want 0 (their Secrets exist)", n, got)
	}
	if got := counted.of(ns, "secrets", fsmSecrets...); got != n {
		t.Errorf("repairs read the %d FSM Secrets %d time(s); want %d", n, got, n)
	}
}

// refusingIssuer fails the test if a certificate is asked for.
type refusingIssuer struct{ t *testing.T }

func (i refusingIssuer) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	i.t.Error("a certificate was issued for a pod whose Secret exists")
	return nil, fmt.Errorf("refused")
}
func (refusingIssuer) CABundle(context.Context) ([]byte, error) { return nil, nil }
func (refusingIssuer) Provider() string                         { return "refusing" }
