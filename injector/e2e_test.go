package injector_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

const (
	meshName     = "fsm"
	fsmNamespace = "fsm-system"
	orphanGrace  = 3 * time.Second
	denyLabel    = "e2e.flomesh.io/deny"
	// settleWithin bounds a wait for what the injector's controllers, its
	// informers and the apiserver do on their own after a change: a hang
	// guard, not a latency under test. On CI's loaded 2-core machine a
	// watch event or a controller's pass can come seconds late.
	settleWithin = 30 * time.Second
)

type e2e struct {
	cl  client.Client
	cfg *rest.Config
	// cache is the manager's, which the handler reads pods from.
	cache cache.Cache
}

// TestE2E runs the injector behind a real kube-apiserver: the apiserver calls
// our webhook over TLS for every pod create.
func TestE2E(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := configv1alpha3.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// FSM's VirtualMachine CRD too: testVirtualMachines.
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs(), filepath.Join("testdata", "crds")}, Client: client.Options{Scheme: scheme}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// The webhook's serving cert comes from its own throwaway CA; pods'
	// bootstrap certs from the real Tresor provider (fsm-ca-bundle).
	servingCA, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	certDir, port := servingCert(t, servingCA)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}}); err != nil {
		t.Fatal(err)
	}
	issuer := newTresor(ctx, t, env.Clientset, 64)

	log := testr.NewWithOptions(t, testr.Options{Verbosity: 0})
	byObject := injector.CacheByObject()
	maps.Copy(byObject, injector.ControllerServiceCacheByObject(fsmNamespace))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  scheme,
		Logger:  log,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{ByObject: byObject},
		// Controller names are unique per process; -count=2 runs it again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: "127.0.0.1", Port: port, CertDir: certDir,
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Added to the manager as serve does: a rejected MeshConfig is reported
	// when stored.
	meshConfig := &injector.CachedMeshConfig{Reader: mgr.GetCache(), Namespace: fsmNamespace, Logger: log, Recorder: mgr.GetEventRecorder("fsm-injector")}
	if err := mgr.Add(meshConfig); err != nil {
		t.Fatal(err)
	}
	h, err := injector.NewHandler(injector.Options{
		Client:       env.Client,
		Pods:         mgr.GetCache(),
		Namespaces:   mgr.GetCache(),
		Services:     mgr.GetCache(),
		MeshConfig:   meshConfig,
		Issuer:       issuer,
		MeshName:     meshName,
		FSMNamespace: fsmNamespace,
		Logger:       log,
		Recorder:     mgr.GetEventRecorder("fsm-injector"),
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr.GetWebhookServer().Register(fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	mgr.GetWebhookServer().Register("/deny", &webhook.Admission{Handler: admission.HandlerFunc(
		func(context.Context, admission.Request) admission.Response {
			return admission.Denied("denied by a later webhook")
		})})
	if err := injector.SetupSecretController(mgr, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: orphanGrace, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if err := injector.SetupSecretWriter(mgr, injector.SecretWriterOptions{Handler: h, Logger: log}); err != nil {
		t.Fatal(err)
	}
	startManager(ctx, t, mgr, cancel)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	// Namespaces are read through the cache; make the informer start now.
	if err := mgr.GetCache().Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{}); err != nil {
		t.Fatal(err)
	}

	e := &e2e{cl: env.Client, cfg: env.Config, cache: mgr.GetCache()}
	e.registerWebhooks(t, ctx, servingCA, port)

	t.Run("monitored pod is injected and its Secret verifies", e.testInjected)
	t.Run("a copy of an injected pod gets its own identity and Secret", e.testCopy)
	t.Run("a copy of a deleted pod as another ServiceAccount does not get the Secret left behind", e.testCopyOfDeletedPod)
	t.Run("a restored pod keeps its restored Secret only if the mesh's root signed it", e.testRestored)
	t.Run("unmonitored pod is untouched", e.testUnmonitored)
	t.Run("dry run creates no Secret", e.testDryRun)
	t.Run("a pod the injector cannot inject is denied before any Secret, with an event", e.testDenied)
	t.Run("a probe scheme the apiserver refuses unmeshed is injected with a warning", e.testProbeScheme)
	t.Run("pod-level resources the injected containers fit: injected and stored", e.testPodLevelResourcesFit)
	t.Run("an app native sidecar before fsm-init: injected as FSM, with a warning", e.testAppNativeSidecar)
	t.Run("a Job's pod outside native mode: the Job is told it never completes", e.testJobNeverCompletes)
	t.Run("an app container on the proxy's uid and port: injected as FSM, the ReplicaSet warned", e.testAppCollidesWithInjected)
	t.Run("a pod tripping nearly every warning: the client receives each whole", e.testWarningsReachClientWhole)
	t.Run("MeshConfig change applies to the next pod", e.testMeshConfig)
	t.Run("MeshConfig the injector cannot apply: last valid settings, Event, metric", e.testRejectedMeshConfig)
	t.Run("MeshConfig the validator admits still injects (IPv6 exclusion a no-op, 2560-bit key)", func(t *testing.T) { e.testValidatedMeshConfigInjects(t, servingCA) })
	t.Run("localDNSProxy: the controller Service's ClusterIP, read through the restricted cache", e.testLocalDNS)
	t.Run("pod refused by a later webhook leaves no Secret", e.testOrphan)
	t.Run("a deleted pod's Secret goes at once; the controller writes no owner reference", e.testSecretFollowsPod)
	t.Run("a pod whose uuid label is removed or changed keeps its Secret while it runs", e.testSecretOfRelabelledPod)
	t.Run("a finished pod's Secret goes while the pod stays; a pending or running pod keeps its own", e.testFinishedPodSecret)
	t.Run("namespace over its issuance limit: 429, nothing issued, retried by client-go", func(t *testing.T) { e.testNamespaceLimit(t, servingCA) })
	t.Run("VirtualMachines get fsm-proxy-uuid in monitored namespaces only", func(t *testing.T) { e.testVirtualMachines(t, servingCA) })
	t.Run("500 concurrent creates", e.testConcurrent)
	t.Run("controller writer: the Secret follows the stored pod; dry runs, refused and deleted pods leave none; a missing one is rebuilt", func(t *testing.T) { e.testControllerWriter(t, servingCA) })
	t.Run("admission writer: a Secret over budget or over the in-flight bound is written by the controller, with the admission's certificate", func(t *testing.T) { e.testAdmissionHandoff(t, servingCA) })
	t.Run("admission writer: a Secret create refused by client-side throttling is handed off, the pod admitted", e.testHandoffWhenClientThrottled)
	t.Run("a repair beats the admitting replica's late write: one Secret, for the pod's uuid, counted once", func(t *testing.T) { e.testRepairBeatsLateOwnerWrite(t, servingCA) })
}

// servingCert writes a serving cert for 127.0.0.1 signed by the test CA and
// returns its directory and a free port.
func servingCert(t *testing.T, issuer *certstest.CA) (string, int) {
	t.Helper()
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := issuer.Authority().Issue(certs.Request{
		CommonName: "127.0.0.1", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		Validity: time.Hour, Usage: certs.UsageServer,
	}, key, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeport.Must(t)
	return dir, port
}

// registerWebhooks installs the injector as FSM registers it (by URL here)
// and a validating webhook that refuses pods labelled denyLabel, then waits
// until the apiserver calls ours.
func (e *e2e) registerWebhooks(t *testing.T, ctx context.Context, issuer *certstest.CA, port int) {
	t.Helper()
	bundle, _ := issuer.CABundle(ctx)
	url := func(path string) *string { return ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", port, path)) }
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	fail := admissionregistrationv1.Fail
	podRule := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhook-" + meshName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "fsm-inject.k8s.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: url(fsmnames.InjectorPath), CABundle: bundle},
			Rules:                   podRule,
			FailurePolicy:           &fail,
			MatchPolicy:             ptr.To(admissionregistrationv1.Exact),
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr.To(int32(20)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{fsmnames.MonitoredByLabel: meshName},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: fsmnames.IgnoreLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
					{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fsmNamespace}},
				},
			},
		}},
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-deny"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "deny.e2e.flomesh.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: url("/deny"), CABundle: bundle},
			Rules:                   podRule,
			FailurePolicy:           &fail,
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{denyLabel: "true"}},
		}},
	}
	for _, o := range []client.Object{mwc, vwc} {
		if err := e.cl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// Webhook configurations take a moment to reach the apiserver's admission
	// chain; probe with dry-run creates until a pod comes back injected.
	ns := e.namespace(t, ctx, "probe", true)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := injector.Probe(ctx, e.cl, injector.Mesh{Name: meshName, FSMNamespace: fsmNamespace}, ns)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never became active: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *e2e) namespace(t *testing.T, ctx context.Context, name string, monitored bool, labels ...map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if monitored {
		ns.Labels = map[string]string{fsmnames.MonitoredByLabel: meshName}
		ns.Annotations = map[string]string{injector.SidecarInjectionAnnotation: "enabled"}
	}
	for _, l := range labels {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		maps.Copy(ns.Labels, l)
	}
	if err := e.cl.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return name
}

func pod(name, ns string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app",
			Ports:         []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstrName("http")}}},
		}}},
	}
}

func bootstrapSecrets(t *testing.T, ctx context.Context, cl client.Client, ns string) []corev1.Secret {
	t.Helper()
	l := &corev1.SecretList{}
	if err := cl.List(ctx, l, client.InNamespace(ns), client.HasLabels{injector.ProxyUUIDLabel}); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *e2e) testInjected(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "injected", true)
	p := pod("web", ns)
	p.Spec.ServiceAccountName = "default"
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	id := p.Labels[injector.ProxyUUIDLabel]
	if id == "" {
		t.Fatalf("pod has no %s label: %v", injector.ProxyUUIDLabel, p.Labels)
	}
	names := func(cs []corev1.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got := strings.Join(names(p.Spec.Containers), ","); got != "sidecar,app" {
		t.Errorf("containers %s, want sidecar,app", got)
	}
	if got := strings.Join(names(p.Spec.InitContainers), ","); got != "fsm-init" {
		t.Errorf("init containers %s, want fsm-init", got)
	}
	if hg := p.Spec.Containers[1].LivenessProbe.HTTPGet; hg.Port.IntValue() != 15901 || hg.Path != "/fsm-healthcheck" {
		t.Errorf("liveness probe not rewritten: %+v", hg)
	}

	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}, s); err != nil {
		t.Fatalf("bootstrap Secret: %v", err)
	}
	cn := injector.CommonName(id, "default", ns, "cluster.local")
	caSecret := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: fsmNamespace, Name: fsmnames.CABundleSecretName}, caSecret); err != nil {
		t.Fatalf("mesh CA Secret: %v", err)
	}
	bundle := caSecret.Data["ca.crt"]
	if err := certstest.ValidCert(bundle, s.Data[injector.RepoCertKey], s.Data[injector.RepoKeyKey], cn, certs.UsageBoth, time.Now()); err != nil {
		t.Errorf("bootstrap cert does not verify against fsm-ca-bundle: %v", err)
	}
	if string(s.Data[injector.CACertKey]) != string(bundle) {
		t.Error("cacert.pem is not the CA bundle")
	}
	leaf, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if v := leaf[0].NotAfter.Sub(leaf[0].NotBefore); v < injector.DefaultBootstrapCertValidity {
		t.Errorf("bootstrap cert validity %s, want >= %s", v, injector.DefaultBootstrapCertValidity)
	}
	if !strings.Contains(string(s.Data[injector.BootstrapConfigKey]), `"NodeID":"`+cn+`"`) {
		t.Errorf("bootstrap.yaml lacks NodeID %s: %s", cn, s.Data[injector.BootstrapConfigKey])
	}
}

// testCopy creates a pod copied from a stored injected one, labels and
// volumes included (kubectl get -o yaml, renamed, created), first as a dry
// run: this injector
// writes no owner reference, so only the stored source tells the copy from
// the injector's own reinvocation; sharing the source's uuid would give two
// pods one identity.
func (e *e2e) testCopy(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "copy", true)
	src := pod("source", ns)
	if err := e.cl.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	srcID := src.Labels[injector.ProxyUUIDLabel]
	// The source has run a while before anyone copies it: the cache has it.
	eventually(t, 30*time.Second, "the source pod in the manager's cache", func() (bool, error) {
		pods := &metav1.PartialObjectMetadataList{}
		pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		err := e.cache.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{injector.ProxyUUIDLabel: srcID})
		return len(pods.Items) == 1, err
	})
	copyOf := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: maps.Clone(src.Labels), Annotations: maps.Clone(src.Annotations)},
			Spec:       *src.Spec.DeepCopy(),
		}
	}
	// A server-side dry run previews what the create gives: a new identity
	// (and no Secret).
	dry := copyOf("copy")
	if err := e.cl.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if id := dry.Labels[injector.ProxyUUIDLabel]; id == "" || id == srcID {
		t.Fatalf("dry run: copy's %s = %q, source's %q: want a new uuid", injector.ProxyUUIDLabel, id, srcID)
	}
	if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != 1 {
		t.Fatalf("dry run of the copy: %d bootstrap Secrets, want the source's only", len(s))
	}
	cp := copyOf("copy")
	if err := e.cl.Create(ctx, cp); err != nil {
		t.Fatal(err)
	}
	id := cp.Labels[injector.ProxyUUIDLabel]
	if id == "" || id == srcID {
		t.Fatalf("copy's %s = %q, source's %q: want a new uuid", injector.ProxyUUIDLabel, id, srcID)
	}
	sidecars, secretName := 0, ""
	for _, c := range cp.Spec.Containers {
		if c.Name == "sidecar" {
			sidecars++
		}
	}
	for _, v := range cp.Spec.Volumes {
		if v.Name == injector.BootstrapVolumeName && v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	if sidecars != 1 || secretName != injector.BootstrapSecretName(id) {
		t.Fatalf("copy has %d sidecars and mounts Secret %q, want 1 and %s", sidecars, secretName, injector.BootstrapSecretName(id))
	}
	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, s); err != nil {
		t.Fatalf("copy's bootstrap Secret: %v", err)
	}
	sa := cp.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	cn := injector.CommonName(id, sa, ns, "cluster.local")
	leaf, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if leaf[0].Subject.CommonName != cn {
		t.Errorf("copy's certificate names %q, want %q", leaf[0].Subject.CommonName, cn)
	}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(srcID)}, &corev1.Secret{}); err != nil {
		t.Errorf("source's bootstrap Secret: %v", err)
	}
}

// testCopyOfDeletedPod: the source pod is gone but its bootstrap Secret is
// still there, owned by no pod (cleanup has not run yet), when a copy of the
// source is created running as another ServiceAccount. Nothing stored
// carries the uuid, so only the Secret's identity tells the copy from the
// injector's own reinvocation: the copy must get a uuid and certificate of
// its own, not the source's identity.
func (e *e2e) testCopyOfDeletedPod(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "copydel", true)
	if err := e.cl.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	src := pod("source", ns)
	if err := e.cl.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	srcID := src.Labels[injector.ProxyUUIDLabel]
	left := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(srcID)}, left); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.Delete(ctx, src, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the source pod and its Secret gone", func() (bool, error) {
		pods := &metav1.PartialObjectMetadataList{}
		pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		if err := e.cache.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(pods.Items) == 0 && len(bootstrapSecrets(t, ctx, e.cl, ns)) == 0, nil
	})
	// The Secret as the source left it, before its cleanup.
	left.ObjectMeta = metav1.ObjectMeta{Name: left.Name, Namespace: ns, Labels: left.Labels}
	if err := e.cl.Create(ctx, left); err != nil {
		t.Fatal(err)
	}
	cp := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "copy", Namespace: ns, Labels: maps.Clone(src.Labels), Annotations: maps.Clone(src.Annotations)},
		Spec:       *src.Spec.DeepCopy(),
	}
	cp.Spec.ServiceAccountName = "other"
	cp.Spec.DeprecatedServiceAccount = ""
	if err := e.cl.Create(ctx, cp); err != nil {
		t.Fatal(err)
	}
	id := cp.Labels[injector.ProxyUUIDLabel]
	if id == "" || id == srcID {
		t.Fatalf("copy's %s = %q, the deleted source's %q: want a new uuid", injector.ProxyUUIDLabel, id, srcID)
	}
	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}, s); err != nil {
		t.Fatalf("copy's bootstrap Secret: %v", err)
	}
	leaf, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if want := injector.CommonName(id, "other", ns, "cluster.local"); leaf[0].Subject.CommonName != want {
		t.Errorf("copy's certificate names %q, want %q", leaf[0].Subject.CommonName, want)
	}
}

// testRestored: Velero restores a namespace, its Secrets before its pods,
// keeping of each object only name, namespace, labels (adding its own) and
// annotations. A pod arrives already injected with its restored Secret in
// place, owned by no pod and a second old: our reinvocation's marks. Its
// identity is kept when the mesh's root signed the Secret's certificate; a
// Secret from a backup taken before a completed root rotation, or in another
// cluster, gets the pod a new identity, not a certificate the mesh does not
// trust and the trust controller never re-issues.
func (e *e2e) testRestored(t *testing.T) {
	ctx := context.Background()
	otherCluster := certstest.MustNew(t, certstest.Options{})
	for _, tc := range []struct {
		name   string
		signer certs.Issuer // of the restored Secret's certificate; nil: as it was
	}{
		{"same root", nil},
		{"another root", otherCluster},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := e.namespace(t, ctx, "restore-"+strings.ReplaceAll(tc.name, " ", "-"), true)
			src := pod("web", ns)
			if err := e.cl.Create(ctx, src); err != nil {
				t.Fatal(err)
			}
			srcID := src.Labels[injector.ProxyUUIDLabel]
			backup := &corev1.Secret{}
			if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(srcID)}, backup); err != nil {
				t.Fatal(err)
			}
			if err := e.cl.Delete(ctx, src, client.GracePeriodSeconds(0)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the namespace's pod and Secret gone", func() (bool, error) {
				p := &corev1.PodList{}
				if err := e.cl.List(ctx, p, client.InNamespace(ns)); err != nil {
					return false, err
				}
				return len(p.Items) == 0 && len(bootstrapSecrets(t, ctx, e.cl, ns)) == 0, nil
			})
			if tc.signer != nil {
				leaf, err := certs.ParseCertsPEM(backup.Data[injector.RepoCertKey])
				if err != nil {
					t.Fatal(err)
				}
				c, err := tc.signer.Issue(ctx, certs.Request{CommonName: leaf[0].Subject.CommonName, DNSNames: leaf[0].DNSNames, Validity: time.Hour,
					Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256})
				if err != nil {
					t.Fatal(err)
				}
				backup.Data[injector.RepoCertKey], backup.Data[injector.RepoKeyKey], backup.Data[injector.CACertKey] = c.CertPEM, c.KeyPEM, c.CABundle
			}
			labels := maps.Clone(backup.Labels)
			labels["velero.io/restore-name"] = "r1"
			restored := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: backup.Name, Namespace: ns, Labels: labels}, Type: backup.Type, Data: backup.Data}
			if err := e.cl.Create(ctx, restored); err != nil {
				t.Fatal(err)
			}
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: src.Name, Namespace: ns, Labels: maps.Clone(src.Labels), Annotations: maps.Clone(src.Annotations)},
				Spec: *src.Spec.DeepCopy()}
			p.Labels["velero.io/restore-name"] = "r1"
			p.Spec.NodeName = ""
			if err := e.cl.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
			id := p.Labels[injector.ProxyUUIDLabel]
			if tc.signer == nil {
				if id != srcID {
					t.Fatalf("restored pod's uuid %q, want its own %q: its restored Secret is valid", id, srcID)
				}
				return
			}
			if id == srcID {
				t.Fatalf("restored pod kept uuid %s and the restored Secret, whose certificate a root the mesh does not trust signed", id)
			}
			s := &corev1.Secret{}
			if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(id)}, s); err != nil {
				t.Fatalf("restored pod's new bootstrap Secret: %v", err)
			}
			leaf, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
			if err != nil {
				t.Fatal(err)
			}
			if err := leaf[0].CheckSignatureFrom(otherCluster.Active()); err == nil {
				t.Error("the new Secret holds the other root's certificate")
			}
		})
	}
}

func (e *e2e) testUnmonitored(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "plain", false)
	p := pod("web", ns)
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 0 || p.Labels[injector.ProxyUUIDLabel] != "" {
		t.Fatalf("unmonitored pod was changed: %+v", p.Spec.Containers)
	}
	if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != 0 {
		t.Fatalf("%d Secrets in an unmonitored namespace", len(s))
	}
}

func (e *e2e) testDryRun(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "dry", true)
	p := pod("web", ns)
	if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Containers) != 2 || p.Labels[injector.ProxyUUIDLabel] == "" {
		t.Fatalf("dry-run pod was not injected: %v", p.Spec.Containers)
	}
	if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != 0 {
		t.Fatalf("dry run created %d Secrets", len(s))
	}
}

// testDenied: a pod the injector cannot inject is denied with a message
// naming what to fix, before any Secret is written (a Secret for a pod the
// apiserver refuses is never used), and the denial is reported as an Event.
// The resource annotation and the container name are ones the injector used
// to take, leaving the apiserver to refuse the pod for a container the user
// never wrote, after the Secret.
func (e *e2e) testDenied(t *testing.T) {
	ctx := context.Background()
	// A namespace each: the recorder folds Warnings of one reason on one
	// namespace into the first Event's series, keeping its note.
	nsLabels := map[string]map[string]string{"denied-psa": {"pod-security.kubernetes.io/enforce": "baseline"}}
	for _, tc := range []struct {
		name, ns string
		edit     func(*corev1.Pod)
		want     string
	}{
		{"port annotation out of range", "denied", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.OutboundPortExclusionAnnotation: "80,99999"}
		}, "Invalid port value '99999' specified for annotation 'flomesh.io/outbound-port-exclusion-list'"},
		{"negative sidecar cpu limit", "denied-resources", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceLimitsPrefix + "cpu": "-1"}
		}, `invalid value "-1" specified for annotation "flomesh.io/sidecar-resource-limits-cpu"`},
		// Parsing it takes about a minute of the CPU every pod create
		// shares (the apiserver never parses an annotation).
		{"sidecar cpu limit with a huge exponent", "denied-costly", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceLimitsPrefix + "cpu": "1e-99999999"}
		}, `invalid quantity "1e-99999999" specified for annotation "flomesh.io/sidecar-resource-limits-cpu": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`},
		{"an app container named sidecar", "denied-names", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: injector.SidecarContainerName, Image: "busybox"})
		}, `spec.containers[1].name: "sidecar" is the injector's; rename it or opt the pod out with annotation flomesh.io/sidecar-injection: disabled`},
		// A valid ServiceAccount name (a DNS subdomain) FSM's control plane
		// would read as ServiceAccount bookstore of namespace bookbuyer.
		{"a ServiceAccount name with a dot", "denied-sa", func(p *corev1.Pod) {
			p.Spec.ServiceAccountName = "bookstore.bookbuyer"
		}, `spec.serviceAccountName "bookstore.bookbuyer": a ServiceAccount name with a dot cannot be meshed: FSM's control plane splits the sidecar identity ` +
			`<serviceaccount>.<namespace> (certificate CN <uuid>.sidecar.<serviceaccount>.<namespace>.<trust domain>) on "." and would read ServiceAccount "bookstore" in namespace "bookbuyer"`},
		// Injected, the apiserver refused it for fsm-init's runAsUser and
		// capabilities ("cannot be set for a windows pod"), after its Secret
		// was written.
		{"a Windows pod", "denied-windows", func(p *corev1.Pod) {
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		}, `spec.os.name "windows": a Windows pod cannot be meshed`},
		// Sent to Windows nodes by its nodeSelector alone (no spec.os), it
		// was injected and stored, then failed on the node.
		{"a pod for Windows nodes by nodeSelector", "denied-windows-selector", func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"}
		}, `spec.nodeSelector["kubernetes.io/os"] "windows": a pod for Windows nodes only cannot be meshed`},
		// Injected, the apiserver refused it: "spec.resources.containers[1]
		// [cpu].limits: Invalid value: "2": must be less than or equal to
		// pod limits of 1", naming a container the user never wrote.
		{"a sidecar limit above the pod-level limit", "denied-podlevel", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceLimitsPrefix + "cpu": "2"}
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
		}, `container sidecar's cpu limit 2 (annotation flomesh.io/sidecar-resource-limits-cpu) is above the pod's limit spec.resources.limits[cpu] 1`},
		// Injected, the apiserver refused it: "spec.resources.requests:
		// Invalid value: "2100m": must be less than or equal to cpu limit
		// of 2", the pod-level request it defaulted from the injected pod.
		{"no room under the pod-level limit for the sidecar's request", "denied-podlevel-request", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceRequestsPrefix + "cpu": "100m"}
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
		}, `spec.resources.limits[cpu] 2 is below the containers' aggregate request of 2100m with sidecar's 100m (annotation flomesh.io/sidecar-resource-requests-cpu)`},
		// Injected, Pod Security Admission (after the webhooks) refused it:
		// `violates PodSecurity "baseline:latest": non-default capabilities
		// (container "fsm-init" must not include "NET_ADMIN" in
		// securityContext.capabilities.add)`, after its Secret was written
		// and its certificate issued, again at every retry of its
		// ReplicaSet.
		{"a namespace enforcing Pod Security baseline", "denied-psa", func(*corev1.Pod) {},
			`namespace label pod-security.kubernetes.io/enforce "baseline": Pod Security Admission refuses the injected pod: fsm-init adds capability NET_ADMIN`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := e.namespace(t, ctx, tc.ns, true, nsLabels[tc.ns])
			p := pod("web", ns)
			tc.edit(p)
			err := e.cl.Create(ctx, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want denial containing %q", err, tc.want)
			}
			if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != 0 {
				t.Fatalf("denied pod left %d Secrets", len(s))
			}
			eventually(t, settleWithin, "a warning event on the namespace", func() (bool, error) {
				l := &eventsv1.EventList{}
				if err := e.cl.List(ctx, l, client.InNamespace(ns)); err != nil {
					return false, err
				}
				for _, ev := range l.Items {
					if ev.Regarding.Kind == "Namespace" && ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Note, tc.want) {
						return true, nil
					}
				}
				return false, nil
			})
		})
	}
}

// testPodLevelResourcesFit: pods with pod-level resources that the
// injected containers fit are injected and pass the apiserver's own checks
// (a dry run is validated as a create): a pod-level request not set is
// defaulted after the webhooks from the whole pod, a native sidecar's limit
// is not held to the pod's, and fsm-init counts at its peak only.
func (e *e2e) testPodLevelResourcesFit(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "podlevel-fit", true)
	q := resource.MustParse
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
	}{
		{"pod-level limits only", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceRequestsPrefix + "cpu": "100m"}
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("2")}}
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: q("1")}
		}},
		{"room for the sidecar", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarResourceLimitsPrefix + "cpu": "1"}
			// The sidecar's request defaults to its limit: 500m + 1 = 1500m.
			p.Spec.Resources = &corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: q("2")}, Requests: corev1.ResourceList{corev1.ResourceCPU: q("1500m")}}
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: q("500m")}
		}},
		{"native sidecar with a limit above the pod's", func(p *corev1.Pod) {
			p.Annotations = map[string]string{injector.SidecarNativeAnnotation: "true", injector.SidecarResourceLimitsPrefix + "cpu": "2",
				injector.SidecarResourceRequestsPrefix + "cpu": "100m"}
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("1")}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("web", ns)
			tc.edit(p)
			if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
				t.Fatalf("create: %v", err)
			}
			if p.Labels[injector.ProxyUUIDLabel] == "" {
				t.Fatalf("not injected: %v", p.Spec.Containers)
			}
		})
	}
}

func (e *e2e) testMeshConfig(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "meshconfig", true)
	mc := presetMeshConfig(t)
	mc.Spec.Sidecar.SidecarImage = "example.com/pipy:from-meshconfig"
	if err := e.cl.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	i := 0
	eventually(t, settleWithin, "the MeshConfig image on the next pod", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("web-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		return p.Spec.Containers[0].Image == "example.com/pipy:from-meshconfig", nil
	})
	if err := e.cl.Delete(ctx, mc); err != nil {
		t.Fatal(err)
	}
	eventually(t, settleWithin, "the default image after the MeshConfig is gone", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("web-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		return p.Spec.Containers[0].Image == injector.DefaultSidecarImage, nil
	})
}

// testLocalDNS: with spec.sidecar.localDNSProxy the pod is refused, naming
// the Service, until fsm-controller exists; then its ClusterIP is the pod's
// DNS server. The Service reaches the handler through the manager's cache
// restricted to that one Service, as serve wires it.
func (e *e2e) testLocalDNS(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "localdns", true)
	mc := presetMeshConfig(t)
	mc.Spec.Sidecar.LocalDNSProxy.Enable = true
	if err := e.cl.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	i := 0
	defer func() {
		if err := e.cl.Delete(ctx, mc); err != nil {
			t.Error(err)
		}
		// The next test must not meet this MeshConfig in the injector's
		// cache: wait until a pod is injected without the local DNS proxy.
		eventually(t, settleWithin, "the injector back on the default MeshConfig", func() (bool, error) {
			i++
			p := pod(fmt.Sprintf("dns-%d", i), ns)
			if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
				return false, nil
			}
			return p.Spec.DNSConfig == nil && len(p.Spec.HostAliases) == 0, nil
		})
	}()
	eventually(t, settleWithin, "a denial naming the missing Service", func() (bool, error) {
		i++
		err := e.cl.Create(ctx, pod(fmt.Sprintf("dns-%d", i), ns), client.DryRunAll)
		if err == nil {
			return false, nil
		}
		return true, expectContains(err, "Service "+fsmNamespace+"/fsm-controller does not exist")
	})
	// A headless one is no DNS server either: the denial, through the
	// apiserver, says what to do about it.
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: fsmNamespace, Name: injector.ControllerServiceName},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pipy-admin-port", Port: 6060}}},
	}
	if err := e.cl.Create(ctx, headless); err != nil {
		t.Fatal(err)
	}
	eventually(t, settleWithin, "a denial saying what to do about the headless Service", func() (bool, error) {
		i++
		err := e.cl.Create(ctx, pod(fmt.Sprintf("dns-%d", i), ns), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "has no ClusterIP") {
			return false, nil
		}
		return true, expectContains(err, `Service `+fsmNamespace+`/fsm-controller has no ClusterIP (clusterIP "None"): its ClusterIP is the DNS server of meshed pods; `+
			`recreate the Service with a ClusterIP (FSM's controller installs it so) or disable the local DNS proxy`)
	})
	if err := e.cl.Delete(ctx, headless); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: fsmNamespace, Name: injector.ControllerServiceName},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pipy-admin-port", Port: 6060}}},
	}
	if err := e.cl.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.cl.Delete(ctx, svc); err != nil {
			t.Error(err)
		}
	}()
	eventually(t, settleWithin, "the controller Service's ClusterIP as the pod's DNS server", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("dns-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, nil
		}
		dns, aliases := p.Spec.DNSConfig, p.Spec.HostAliases
		return dns != nil && len(dns.Nameservers) == 1 && dns.Nameservers[0] == svc.Spec.ClusterIP && p.Spec.DNSPolicy == corev1.DNSNone &&
			len(aliases) == 1 && aliases[0].IP == svc.Spec.ClusterIP && aliases[0].Hostnames[0] == "fsm-controller."+fsmNamespace, nil
	})
}

func expectContains(err error, want string) error {
	if !strings.Contains(err.Error(), want) {
		return fmt.Errorf("error %q lacks %q", err, want)
	}
	return nil
}

func (e *e2e) testOrphan(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "orphan", true)
	p := pod("web", ns)
	p.Labels = map[string]string{denyLabel: "true"}
	err := e.cl.Create(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "denied by a later webhook") {
		t.Fatalf("create: %v, want denial by the validating webhook", err)
	}
	// Our webhook ran first and created the Secret; the pod never appears.
	if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != 1 {
		t.Fatalf("%d bootstrap Secrets right after the refused create, want 1", len(s))
	}
	// A live pod's Secret in the same namespace must survive the cleanup.
	live := pod("live", ns)
	if err := e.cl.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	liveSecret := injector.BootstrapSecretName(live.Labels[injector.ProxyUUIDLabel])
	eventually(t, orphanGrace+settleWithin, "the orphaned Secret to be deleted", func() (bool, error) {
		s := bootstrapSecrets(t, ctx, e.cl, ns)
		return len(s) == 1 && s[0].Name == liveSecret, nil
	})
}

func (e *e2e) testConcurrent(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "load", true)
	const n, workers = 500, 25
	errs := testenv.Concurrently(n, workers, func(i int) error {
		return e.cl.Create(ctx, pod(fmt.Sprintf("p-%d", i), ns))
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d creates failed; first: %v", len(errs), n, errors.Join(errs[0]))
	}
	if s := bootstrapSecrets(t, ctx, e.cl, ns); len(s) != n {
		t.Fatalf("%d bootstrap Secrets for %d pods", len(s), n)
	}
}

func presetMeshConfig(t *testing.T) *configv1alpha3.MeshConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := &configv1alpha3.MeshConfig{}
	if err := yamlUnmarshal(raw, mc); err != nil {
		t.Fatal(err)
	}
	mc.Namespace, mc.Name = fsmNamespace, fsmnames.MeshConfigName
	return mc
}

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }

func yamlUnmarshal(raw []byte, o any) error { return yaml.UnmarshalStrict(raw, o) }
