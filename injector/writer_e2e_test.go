package injector_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// writerReplica starts, until the test ends, what serve runs for the
// injector of mesh: a manager with the bootstrap Secret cleanup and writer
// over the injector's restricted cache, and the handler (pending set: the
// controller writes the Secrets; nil: the admission does). It returns the
// handler, not served.
func (e *e2e) writerReplica(t *testing.T, issuer certs.Issuer, mesh string, pending *injector.PendingSecrets, repairDelay time.Duration) *injector.Handler {
	t.Helper()
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	mgr, err := ctrl.NewManager(e.cfg, ctrl.Options{
		Scheme: e.cl.Scheme(), Logger: log, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{ByObject: injector.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := injector.NewHandler(injector.Options{
		Client: e.cl, Pods: mgr.GetCache(), Namespaces: mgr.GetClient(), Issuer: issuer, MeshName: mesh, FSMNamespace: fsmNamespace,
		Pending: pending, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: mesh, GracePeriod: orphanGrace, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, RepairDelay: repairDelay, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	startManager(ctx, t, mgr, cancel)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return h
}

func writtenTotal(t *testing.T, writer string) float64 {
	t.Helper()
	n, ok := counterSum(t, "fsm_webhooks_injector_bootstrap_secrets_written_total", map[string]string{"writer": writer})
	if !ok {
		t.Fatalf("no fsm_webhooks_injector_bootstrap_secrets_written_total{writer=%q}", writer)
	}
	return n
}

// testControllerWriter: design (b) through the real apiserver. The
// admission issues nothing and writes nothing; the Secret follows the stored
// pod; a dry run and a pod a later webhook refuses leave no Secret and no
// certificate; a Secret missing for a stored pod (its admitting replica
// stopped) is rebuilt by another replica; a pod deleted right after its
// create leaves no Secret past the sweep.
func (e *e2e) testControllerWriter(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	const mesh = "writer"
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	pending := injector.NewPendingSecrets(3 * time.Second)
	h := e.writerReplica(t, ca, mesh, pending, 0)
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	createForTest(ctx, t, e.cl, meshInjectorConfig(mesh, url, bundle))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "writer",
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}
	if err := e.cl.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the writer mesh's injector to be called", func() (bool, error) {
		return injector.Probe(ctx, e.cl, ns.Name) == nil, nil
	})
	secretKey := func(p *corev1.Pod) client.ObjectKey {
		return client.ObjectKey{Namespace: ns.Name, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
	}
	waitSecret := func(p *corev1.Pod) *corev1.Secret {
		t.Helper()
		s := &corev1.Secret{}
		eventually(t, 10*time.Second, "the bootstrap Secret of pod "+p.Name, func() (bool, error) {
			err := e.cl.Get(ctx, secretKey(p), s)
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		return s
	}
	caBundle, err := ca.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkSecret := func(p *corev1.Pod, s *corev1.Secret) {
		t.Helper()
		cn := injector.CommonName(p.Labels[injector.ProxyUUIDLabel], p.Spec.ServiceAccountName, ns.Name, "cluster.local")
		if err := certstest.ValidCert(caBundle, s.Data[injector.RepoCertKey], s.Data[injector.RepoKeyKey], cn, certs.UsageBoth, time.Now()); err != nil {
			t.Errorf("Secret %s: %v", s.Name, err)
		}
		if !strings.Contains(string(s.Data[injector.BootstrapConfigKey]), `"NodeID":"`+cn+`"`) {
			t.Errorf("Secret %s: bootstrap.yaml lacks NodeID %s: %s", s.Name, cn, s.Data[injector.BootstrapConfigKey])
		}
		if s.Labels["app.kubernetes.io/instance"] != mesh || len(s.OwnerReferences) != 0 {
			t.Errorf("Secret %s: labels %v, owners %v; want instance %s, no owner", s.Name, s.Labels, s.OwnerReferences, mesh)
		}
	}

	byController := writtenTotal(t, "controller")
	p := pod("web", ns.Name)
	p.Spec.ServiceAccountName = "default"
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkSecret(p, waitSecret(p))
	// Counted right after the create returns.
	eventually(t, 5*time.Second, "written{writer=controller} to go up by 1", func() (bool, error) {
		return writtenTotal(t, "controller")-byController == 1, nil
	})
	// The record goes right after the write returns.
	eventually(t, 5*time.Second, "the written Secret's record to go", func() (bool, error) { return pending.Len() == 0, nil })

	// Dry run: nothing recorded, issued or written.
	if err := e.cl.Create(ctx, pod("dry", ns.Name), client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if pending.Len() != 0 {
		t.Errorf("a dry run left %d pending", pending.Len())
	}

	// Refused by a later webhook: recorded, never written, expired.
	refused := pod("refused", ns.Name)
	refused.Labels = map[string]string{denyLabel: "true"}
	if err := e.cl.Create(ctx, refused); err == nil || !strings.Contains(err.Error(), "denied by a later webhook") {
		t.Fatalf("create: %v, want denial by the validating webhook", err)
	}
	expired, _ := counterSum(t, "fsm_webhooks_injector_pending_secrets_expired_total", nil)
	eventually(t, 15*time.Second, "the refused pod's record to expire", func() (bool, error) {
		return pending.Len() == 0, nil
	})
	if n, _ := counterSum(t, "fsm_webhooks_injector_pending_secrets_expired_total", nil); n-expired != 1 {
		t.Errorf("pending_secrets_expired_total went up by %v, want 1", n-expired)
	}
	// The writer may beat the create's return, so issuance is counted here:
	// the dry run and the refused pod's admissions issued nothing.
	if s := bootstrapSecrets(t, ctx, e.cl, ns.Name); len(s) != 1 || ca.Issued() != 1 {
		t.Errorf("%d Secrets and %d certificates after a dry run and a refused pod, want 1 and 1 (the first pod's)", len(s), ca.Issued())
	}

	// Pods deleted right after their create: no Secret outlives the sweep.
	var gone []*corev1.Pod
	for i := range 10 {
		q := pod(fmt.Sprintf("brief-%d", i), ns.Name)
		if err := e.cl.Create(ctx, q); err != nil {
			t.Fatal(err)
		}
		if err := e.cl.Delete(ctx, q, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, q)
	}
	eventually(t, orphanGrace+20*time.Second, "the deleted pods' Secrets to be gone", func() (bool, error) {
		for _, q := range gone {
			err := e.cl.Get(ctx, secretKey(q), &corev1.Secret{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	})

	// The replica that admitted a pod stopped before writing (here: the
	// Secret is deleted by hand): another replica, admission writer, rebuilds
	// it from the stored pod once its informer reports the pod.
	first := waitSecret(p)
	if err := e.cl.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	repaired := writtenTotal(t, "repair")
	e.writerReplica(t, ca, mesh, nil, 500*time.Millisecond)
	s := waitSecret(p)
	if s.UID == first.UID {
		t.Fatal("the deleted Secret came back with its old uid")
	}
	checkSecret(p, s)
	eventually(t, 5*time.Second, "written{writer=repair} to go up by 1", func() (bool, error) {
		return writtenTotal(t, "repair")-repaired == 1, nil
	})

	// A burst: every pod gets its Secret.
	const n = 100
	pods := make([]*corev1.Pod, n)
	errs := testenv.Concurrently(n, 20, func(i int) error {
		pods[i] = pod(fmt.Sprintf("burst-%d", i), ns.Name)
		return e.cl.Create(ctx, pods[i])
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d creates failed; first: %v", len(errs), n, errors.Join(errs[0]))
	}
	for _, q := range pods {
		waitSecret(q)
	}
}
