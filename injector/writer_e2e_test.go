package injector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// replicaWriter is how a writerReplica's handler places bootstrap Secrets:
// Options.Pending, SecretWriter and Handoff (Pending nil: the admission
// writes every one), and the writer's repair delay.
type replicaWriter struct {
	pending     *injector.PendingSecrets
	writer      injector.SecretWriter
	handoff     injector.SecretHandoff
	repairDelay time.Duration
	// client, when set, is the handler's and the writer's client to the
	// API server (default: e.cl).
	client client.Client
	// events: the handler records Events (manager's recorder), as serve's.
	events bool
}

// serveMesh serves h as mesh's injector (its own MutatingWebhookConfiguration,
// as the chart registers it), creates namespace ns monitored by mesh with
// injection enabled, and waits until the apiserver calls h for it.
func (e *e2e) serveMesh(ctx context.Context, t *testing.T, servingCA *certstest.CA, mesh, ns string, h *injector.Handler) *corev1.Namespace {
	t.Helper()
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	createForTest(ctx, t, e.cl, meshInjectorConfig(mesh, url, bundle))
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}
	if err := e.cl.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the "+mesh+" mesh's injector to be called", func() (bool, error) {
		return injector.Probe(ctx, e.cl, injector.Mesh{Name: mesh, FSMNamespace: fsmNamespace}, n.Name) == nil, nil
	})
	return n
}

// writerReplica starts, until the test ends, what serve runs for the
// injector of mesh: a manager with the bootstrap Secret cleanup and writer
// over the injector's restricted cache, and the handler. It returns the
// handler, not served.
func (e *e2e) writerReplica(t *testing.T, issuer certs.Issuer, mesh string, rw replicaWriter) *injector.Handler {
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
	live := e.cl
	if rw.client != nil {
		live = rw.client
	}
	h, err := injector.NewHandler(injector.Options{
		Client: live, Pods: mgr.GetCache(), Namespaces: mgr.GetClient(), Issuer: issuer, MeshName: mesh, FSMNamespace: fsmNamespace,
		Pending: rw.pending, SecretWriter: rw.writer, Handoff: rw.handoff, Logger: log,
		Recorder: recorderIf(rw.events, mgr),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: mesh, GracePeriod: orphanGrace, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, RepairDelay: rw.repairDelay, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	startManager(ctx, t, mgr, cancel)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return h
}

// recorderIf is mgr's Event recorder when on, else none.
func recorderIf(on bool, mgr ctrl.Manager) injector.EventRecorder {
	if !on {
		return nil
	}
	return mgr.GetEventRecorder("fsm-injector")
}

func writtenTotal(t *testing.T, writer string) float64 {
	t.Helper()
	n, ok := counterSum(t, "fsm_webhooks_injector_bootstrap_secrets_written_total", map[string]string{"writer": writer})
	if !ok {
		t.Fatalf("no fsm_webhooks_injector_bootstrap_secrets_written_total{writer=%q}", writer)
	}
	return n
}

// bootstrapSecretKey names p's bootstrap Secret.
func bootstrapSecretKey(p *corev1.Pod) client.ObjectKey {
	return client.ObjectKey{Namespace: p.Namespace, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
}

// waitBootstrapSecret waits up to 30 s for p's bootstrap Secret: a
// liveness bound on the writer's pass (the pod informer's event, a repair
// delay, an issuance and a create), which a loaded CI machine can hold up
// for seconds.
func (e *e2e) waitBootstrapSecret(ctx context.Context, t *testing.T, p *corev1.Pod) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	eventually(t, 30*time.Second, "the bootstrap Secret of pod "+p.Name, func() (bool, error) {
		err := e.cl.Get(ctx, bootstrapSecretKey(p), s)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	return s
}

// checkBootstrapSecret checks that s is what mesh's injector writes for p:
// a certificate from ca for p's identity, its bootstrap config, the mesh's
// labels and no owner.
func checkBootstrapSecret(ctx context.Context, t *testing.T, ca *certstest.CA, mesh string, p *corev1.Pod, s *corev1.Secret) {
	t.Helper()
	caBundle, err := ca.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cn := injector.CommonName(p.Labels[injector.ProxyUUIDLabel], p.Spec.ServiceAccountName, p.Namespace, "cluster.local")
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
	pending := injector.NewPendingSecrets(10 * time.Second)
	h := e.writerReplica(t, ca, mesh, replicaWriter{pending: pending, writer: injector.SecretWriterController})
	ns := e.serveMesh(ctx, t, servingCA, mesh, "writer", h)
	waitSecret := func(p *corev1.Pod) *corev1.Secret { t.Helper(); return e.waitBootstrapSecret(ctx, t, p) }
	checkSecret := func(p *corev1.Pod, s *corev1.Secret) { t.Helper(); checkBootstrapSecret(ctx, t, ca, mesh, p, s) }

	byController := writtenTotal(t, "controller")
	p := pod("web", ns.Name)
	p.Spec.ServiceAccountName = "default"
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkSecret(p, waitSecret(p))
	// Counted right after the create returns.
	eventually(t, settleWithin, "written{writer=controller} to go up by 1", func() (bool, error) {
		return writtenTotal(t, "controller")-byController == 1, nil
	})
	// The record goes right after the write returns.
	eventually(t, settleWithin, "the written Secret's record to go", func() (bool, error) { return pending.Len() == 0, nil })

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
	// The expiry counts once it has let go of the record, so the count is
	// waited for too.
	var nExpired float64
	eventually(t, 30*time.Second, "the refused pod's record to expire", func() (bool, error) {
		nExpired, _ = counterSum(t, "fsm_webhooks_injector_pending_secrets_expired_total", nil)
		return pending.Len() == 0 && nExpired-expired >= 1, nil
	})
	if nExpired-expired != 1 {
		t.Errorf("pending_secrets_expired_total went up by %v, want 1", nExpired-expired)
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
	eventually(t, orphanGrace+settleWithin, "the deleted pods' Secrets to be gone", func() (bool, error) {
		for _, q := range gone {
			err := e.cl.Get(ctx, bootstrapSecretKey(q), &corev1.Secret{})
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
	e.writerReplica(t, ca, mesh, replicaWriter{repairDelay: 500 * time.Millisecond})
	s := waitSecret(p)
	if s.UID == first.UID {
		t.Fatal("the deleted Secret came back with its old uid")
	}
	checkSecret(p, s)
	eventually(t, settleWithin, "written{writer=repair} to go up by 1", func() (bool, error) {
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

// testAdmissionHandoff: the admission writer through the real apiserver.
// With a budget no create meets, every pod is admitted at once and its
// Secret, built in the admission, is written by the controller once the pod
// is stored, with the admission's certificate (none signed twice). With one
// inline slot and a burst, each pod gets one Secret, written by whichever
// side the counters say.
func (e *e2e) testAdmissionHandoff(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	handoffs := func(reason string) float64 {
		n, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secret_handoffs_total", map[string]string{"reason": reason})
		return n
	}
	// replica serves a mesh of that name injecting the namespace of that
	// name, and waits until the apiserver calls it; cl, when set, is its
	// client.
	replica := func(mesh string, pending *injector.PendingSecrets, handoff injector.SecretHandoff, cl client.Client) {
		h := e.writerReplica(t, ca, mesh, replicaWriter{pending: pending, writer: injector.SecretWriterAdmission, handoff: handoff, client: cl})
		e.serveMesh(ctx, t, servingCA, mesh, mesh, h)
	}

	pending := injector.NewPendingSecrets(10 * time.Second)
	replica("handoff-slow", pending, injector.SecretHandoff{InFlight: 16, Budget: time.Nanosecond}, nil)
	slow, byController, byAdmission, issued := handoffs("slow"), writtenTotal(t, "controller"), writtenTotal(t, "admission"), ca.Issued()
	p := pod("slow", "handoff-slow")
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkBootstrapSecret(ctx, t, ca, "handoff-slow", p, e.waitBootstrapSecret(ctx, t, p))
	eventually(t, settleWithin, "written{writer=controller} to go up by 1", func() (bool, error) {
		return writtenTotal(t, "controller")-byController == 1, nil
	})
	if d := handoffs("slow") - slow; d != 1 {
		t.Errorf("handoffs{reason=slow} rose by %v, want 1", d)
	}
	if d := writtenTotal(t, "admission") - byAdmission; d != 0 {
		t.Errorf("written{writer=admission} rose by %v, want 0 (no create meets a 1 ns budget)", d)
	}
	if d := ca.Issued() - issued; d != 1 {
		t.Errorf("%d certificates issued for one pod, want 1: the controller must create the Secret the admission built", d)
	}
	eventually(t, settleWithin, "the written Secret's record to go", func() (bool, error) { return pending.Len() == 0, nil })

	// One slot and a budget a healthy create meets: the pods over the slot
	// go to the controller as busy. A loaded apiserver can still hold a
	// create past 10 s, and the admission then rightly hands it off as
	// slow: hand-offs as slow are checked against the creates that did
	// outlast the budget, not assumed to be none.
	watch := &budgetWatch{Client: e.cl}
	replica("handoff-busy", injector.NewPendingSecrets(0), injector.SecretHandoff{InFlight: 1, Budget: 10 * time.Second}, watch)
	busy, slow, byController, byAdmission := handoffs("busy"), handoffs("slow"), writtenTotal(t, "controller"), writtenTotal(t, "admission")
	const n = 40
	pods := make([]*corev1.Pod, n)
	errs := testenv.Concurrently(n, 20, func(i int) error {
		pods[i] = pod(fmt.Sprintf("burst-%d", i), "handoff-busy")
		return e.cl.Create(ctx, pods[i])
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d creates failed; first: %v", len(errs), n, errors.Join(errs[0]))
	}
	for _, q := range pods {
		checkBootstrapSecret(ctx, t, ca, "handoff-busy", q, e.waitBootstrapSecret(ctx, t, q))
	}
	// Every create has returned: the hand-offs are all counted.
	handed, slowed := handoffs("busy")-busy, handoffs("slow")-slow
	if outlasted := watch.outlasted.Load(); slowed > float64(outlasted) {
		t.Errorf("handoffs{reason=slow} rose by %v, yet %d Secret creates outlasted the 10 s budget: a create answered in time was handed off", slowed, outlasted)
	}
	eventually(t, settleWithin, "written{admission} + written{controller} to reach the burst", func() (bool, error) {
		return writtenTotal(t, "admission")-byAdmission+writtenTotal(t, "controller")-byController == n, nil
	})
	// A slow hand-off's abandoned create may land first, and is then
	// counted as the admission's.
	if d := writtenTotal(t, "controller") - byController; d < handed || d > handed+slowed {
		t.Errorf("written{writer=controller} rose by %v, handoffs by %v busy and %v slow: the controller writes the Secrets handed off (less abandoned creates that landed), and only those", d, handed, slowed)
	}
	t.Logf("burst of %d, 20 at once, one inline slot: %v handed to the controller as busy, %v as slow", n, handed, slowed)
}

// budgetWatch counts the Secret creates that ran out of their context, or
// that client-go's rate limiter refused as sure to (what the admission
// writer hands off as slow). The writer controller's own creates share the
// client; one of those running out only loosens the count.
type budgetWatch struct {
	client.Client
	outlasted atomic.Int64
}

func (c *budgetWatch) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	if _, ok := obj.(*corev1.Secret); ok && err != nil && (ctx.Err() != nil || strings.Contains(err.Error(), "client rate limiter Wait returned an error")) {
		c.outlasted.Add(1)
	}
	return err
}

// testHandoffWhenClientThrottled: the admission writer hands a Secret whose
// create cannot answer within the budget to the writer controller. A create
// held by client-go's own rate limiter (serve's --kube-api-qps) fails at
// once, "rate: Wait(n=1) would exceed context deadline", while the budget
// has not run out: that is the budget running out too, and the pod is
// admitted with its Secret handed off, not refused with 500.
func (e *e2e) testHandoffWhenClientThrottled(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "throttled", true)
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.cfg)
	cfg.QPS, cfg.Burst = 0.2, 1 // a token every 5 s
	slow, err := client.New(cfg, client.Options{Scheme: e.cl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	pending := injector.NewPendingSecrets(0)
	h, err := injector.NewHandler(injector.Options{
		Client: slow, Namespaces: e.cl, Issuer: ca, MeshName: meshName, FSMNamespace: fsmNamespace,
		Pending: pending, Handoff: injector.SecretHandoff{Budget: time.Second}, Logger: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Warms the client's REST mapper; this read takes the client's only
	// token, as another admission's create would.
	if err := slow.Get(ctx, client.ObjectKey{Namespace: ns, Name: "none"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	slowHandoffs, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secret_handoffs_total", map[string]string{"reason": "slow"})
	raw, err := json.Marshal(pod("throttled", ns))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp := h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-throttled", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}})
	if !resp.Allowed || len(resp.Patch) == 0 || pending.Len() != 1 {
		t.Fatalf("Secret create throttled by the client beyond the 1 s budget: allowed=%v code %d %q, records handed off %d; want the pod patched and its Secret handed off",
			resp.Allowed, resp.Result.Code, resp.Result.Message, pending.Len())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("admission took %s with a 1 s budget", took)
	}
	if n, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secret_handoffs_total", map[string]string{"reason": "slow"}); n-slowHandoffs != 1 {
		t.Errorf("handoffs{reason=slow} rose by %v, want 1", n-slowHandoffs)
	}
}
