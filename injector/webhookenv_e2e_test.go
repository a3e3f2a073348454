package injector_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// The envtest suites' shared set-up: an apiserver for the controllers'
// suites and their manager, an extra webhook server behind the apiserver,
// its configuration, and a Tresor issuer.

// startCoreEnv starts an apiserver whose client knows the core API types
// only and creates namespaces in it: the controllers' suites, which run no
// webhook and need no CRD.
func startCoreEnv(t *testing.T, namespaces ...string) *testenv.Env {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme}})
	for _, ns := range namespaces {
		if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// secretControllerManager is a manager, not started, that runs the
// bootstrap Secret controller with opts over the injector's restricted
// cache as serve does, logging to opts.Logger.
func secretControllerManager(t *testing.T, env *testenv.Env, opts injector.SecretControllerOptions) manager.Manager {
	t.Helper()
	return secretControllerManagerFor(t, env.Config, env.Client.Scheme(), opts)
}

// secretControllerManagerFor is secretControllerManager talking to the
// apiserver through cfg (one a test wraps to count or refuse requests).
func secretControllerManagerFor(t *testing.T, cfg *rest.Config, scheme *runtime.Scheme, opts injector.SecretControllerOptions) manager.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Logger: opts.Logger, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{ByObject: injector.CacheByObject()},
		// Other tests in this process register the same controller name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretController(mgr, opts); err != nil {
		t.Fatal(err)
	}
	return mgr
}

// startManager runs mgr on ctx until the test ends; then cancel (ctx's)
// stops it and the test waits for it and fails on its error.
func startManager(ctx context.Context, t *testing.T, mgr manager.Manager, cancel context.CancelFunc) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// counterSum is the sum of the samples of counter name in
// controller-runtime's registry (where the injector's metrics are) whose
// labels include match; found is false when none does.
func counterSum(t *testing.T, name string, match map[string]string) (sum float64, found bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue()
			found = true
		}
	}
	return sum, found
}

// serveWebhook serves h at path on 127.0.0.1 with a fresh serving cert from
// servingCA and, once it listens, returns the URL for the webhook
// configuration and the CA bundle that trusts it. The server stops, and the
// test waits for it, when the test ends; a configuration created afterwards
// with createForTest is deleted before that, so the apiserver never calls a
// stopped server.
func serveWebhook(ctx context.Context, t *testing.T, servingCA *certstest.CA, path string, h http.Handler) (url string, caBundle []byte) {
	t.Helper()
	certDir, port := servingCert(t, servingCA)
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir})
	srv.Register(path, h)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Start(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook server for %s: %v", path, err)
		}
	})
	// Listening before it is registered: the apiserver may call it as soon
	// as the configuration is created, and a refused connection fails the
	// call (failurePolicy Fail), which a probe then takes for the answer.
	started := srv.StartedChecker()
	poll.Until(t, 30*time.Second, 10*time.Millisecond, "the webhook server for "+path+" to listen", func() error {
		select {
		case err := <-done:
			done <- err // for the clean-up
			t.Fatalf("webhook server for %s stopped before it listened: %v", path, err)
		default:
		}
		return started(nil)
	})
	bundle, err := servingCA.CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("https://127.0.0.1:%d%s", port, path), bundle
}

// meshInjectorConfig registers an injector of mesh at url (serveWebhook's)
// for pod creates in the namespaces mesh monitors, as the chart does.
func meshInjectorConfig(mesh, url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhook-" + mesh},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "fsm-inject.k8s.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{fsmnames.MonitoredByLabel: mesh}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(20)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
}

// registerInjector serves h, named name in the request metrics, as mesh
// meshName's injector and registers it as the chart does (reinvocationPolicy
// Never) until the test ends. It returns the registration and the CA of
// the server's cert, for other webhooks of the test.
func registerInjector(ctx context.Context, t *testing.T, cl client.Client, h admission.Handler, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, *certstest.CA) {
	t.Helper()
	servingCA, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h).Named(name))
	reg := meshInjectorConfig(meshName, url, bundle)
	reg.Webhooks[0].ReinvocationPolicy = ptr.To(admissionregistrationv1.NeverReinvocationPolicy)
	createForTest(ctx, t, cl, reg)
	return reg, servingCA
}

// injectedNamespace creates namespace name, monitored by meshName with
// injection enabled, and waits until the injector is called for its pods
// (a dry-run probe: no Secret).
func injectedNamespace(ctx context.Context, t *testing.T, cl client.Client, name string) {
	t.Helper()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: meshName},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the injector to be called", func() (bool, error) {
		return injector.Probe(ctx, cl, injector.Mesh{Name: meshName, FSMNamespace: fsmNamespace}, name) == nil, nil
	})
}

// tresorInjector is the injector of mesh meshName for env, its
// certificates from newTresor (a pool of keys keys).
func tresorInjector(ctx context.Context, t *testing.T, env *testenv.Env, keys int) *injector.Handler {
	t.Helper()
	h, err := injector.NewHandler(injector.Options{
		Client: env.Client, Namespaces: env.Client, Issuer: newTresor(ctx, t, env.Clientset, keys),
		MeshName: meshName, FSMNamespace: fsmNamespace,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// createForTest creates obj and deletes it when the test ends.
func createForTest(ctx context.Context, t *testing.T, cl client.Client, obj client.Object) {
	t.Helper()
	if err := cl.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Delete(context.Background(), obj); err != nil {
			t.Errorf("deleting %T %s: %v", obj, obj.GetName(), err)
		}
	})
}

// newTresor returns FSM's Tresor issuer with its root in fsmNamespace
// (fsm-ca-bundle) over a started ECDSA P-256 key pool of size keys; both live
// as long as ctx.
func newTresor(ctx context.Context, t *testing.T, cs kubernetes.Interface, size int) *tresor.Issuer {
	t.Helper()
	keys, err := keypool.NewSet(keypool.Options{Algorithm: certs.ECDSAP256, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = keys.Start(ctx) }()
	issuer, err := tresor.New(ctx, tresor.Options{
		Store: tresor.Store{Client: cs, Namespace: fsmNamespace, RootKeyAlgorithm: certs.ECDSAP256},
		Keys:  keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return issuer
}
