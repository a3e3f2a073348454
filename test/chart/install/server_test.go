package install_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// freePort is a loopback port for a server the test starts.
func freePort(t *testing.T) int { return freeport.Must(t) }

// impersonatingKubeconfig is the envtest admin kubeconfig acting as user.
func impersonatingKubeconfig(t *testing.T, admin []byte, user string, groups []string) string {
	t.Helper()
	cfg, err := clientcmd.Load(admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
		ai.ImpersonateGroups = groups
	}
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// serverAdoptsChart runs the real `fsm-webhooks serve` out of cluster with the
// Deployment's own arguments, as the chart's ServiceAccount (impersonated),
// under the chart's RBAC and admission policies, and checks that it adopts
// the chart's objects: only caBundles and the CRD's conversion change, its
// Secrets appear, a bootstrap Secret is written and adopted by its pod,
// nothing it does is forbidden, and the injector and converter become ready. (The validator's readiness probe
// needs the apiserver to reach it through its Service, which envtest cannot
// route, so it is not asserted here.)
func serverAdoptsChart(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := env.Client

	var dep appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &dep); err != nil {
		t.Fatal(err)
	}
	var mwcBefore admv1.MutatingWebhookConfiguration
	var vwcBefore admv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwcBefore); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Name: vwcName}, &vwcBefore); err != nil {
		t.Fatal(err)
	}

	bin := buildServer(ctx, t, t.TempDir())

	proc := startServe(ctx, t, env, bin)
	deadline := time.Now().Add(90 * time.Second)
	var mwc admv1.MutatingWebhookConfiguration
	var vwc admv1.ValidatingWebhookConfiguration
	var crd apiextv1.CustomResourceDefinition
	// Every validating entry (policy and MeshConfig webhook, one server).
	noCABundle := func(w admv1.ValidatingWebhook) bool { return len(w.ClientConfig.CABundle) == 0 }
	for {
		select {
		case err := <-proc.exited:
			t.Fatalf("fsm-webhooks exited: %v\n%s", err, proc.logs.String())
		default:
		}
		errs := []error{
			c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwc),
			c.Get(ctx, types.NamespacedName{Name: vwcName}, &vwc),
			c.Get(ctx, types.NamespacedName{Name: crdName}, &crd),
		}
		done := errs[0] == nil && errs[1] == nil && errs[2] == nil &&
			validPEM(mwc.Webhooks[0].ClientConfig.CABundle) && !slices.ContainsFunc(vwc.Webhooks, noCABundle) &&
			crd.Spec.Conversion != nil && crd.Spec.Conversion.Webhook != nil && crd.Spec.Conversion.Webhook.ClientConfig != nil &&
			len(crd.Spec.Conversion.Webhook.ClientConfig.CABundle) > 0 &&
			proc.readyz("injector") && proc.readyz("converter")
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fsm-webhooks did not adopt the chart's configurations within 90s (errors %v)", errs)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Only the caBundle changed.
	wantM, gotM := mwcBefore.DeepCopy(), mwc.DeepCopy()
	webhooks.SetMutatingCABundle(wantM, nil)
	webhooks.SetMutatingCABundle(gotM, nil)
	if !equality.Semantic.DeepEqual(gotM.Webhooks, wantM.Webhooks) {
		t.Errorf("the server changed more than the caBundle of %s:\n got %+v\nwant %+v", mwcName, gotM.Webhooks, wantM.Webhooks)
	}
	wantV, gotV := vwcBefore.DeepCopy(), vwc.DeepCopy()
	webhooks.SetValidatingCABundle(wantV, nil)
	webhooks.SetValidatingCABundle(gotV, nil)
	if !equality.Semantic.DeepEqual(gotV.Webhooks, wantV.Webhooks) {
		t.Errorf("the server changed more than the caBundle of %s:\n got %+v\nwant %+v", vwcName, gotV.Webhooks, wantV.Webhooks)
	}
	if s := crd.Spec.Conversion.Webhook.ClientConfig.Service; s == nil || s.Name != fsmnames.ConverterService || s.Namespace != ns {
		t.Errorf("conversion webhook service %+v, want %s/%s", s, ns, fsmnames.ConverterService)
	}

	for _, name := range []string{fsmnames.CABundleSecretName, fsmnames.InjectorCertSecret, fsmnames.ValidatorCertSecret, fsmnames.ConverterCertSecret} {
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.Secret{}); err != nil {
			t.Errorf("Secret %s/%s: %v", ns, name, err)
		}
	}

	// Admissions as the apiserver would send them (envtest cannot route to
	// the Services): the handlers read namespaces and the MeshConfig through
	// informers and write a bootstrap Secret, all as the chart's ServiceAccount.
	createInjectedNamespace(ctx, t, c, "app")
	// A namespace whose LimitRange the injected containers break (checked
	// below, once the server's LimitRange informer, which readiness does
	// not wait for, has had time to list under the chart's RBAC).
	createInjectedNamespace(ctx, t, c, "policed")
	if err := c.Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "ratio", Namespace: "policed"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2")}}}}}); err != nil {
		t.Fatal(err)
	}
	resp := admitPod(t, proc, mwc.Webhooks[0].ClientConfig.CABundle, "app", "web")
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Errorf("injector response: allowed=%v patch=%d bytes result=%+v", resp.Allowed, len(resp.Patch), resp.Result)
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace("app"), client.HasLabels{"fsm-proxy-uuid"}); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 || !strings.HasPrefix(secrets.Items[0].Name, fsmnames.BootstrapSecretPrefix) {
		t.Errorf("bootstrap Secrets in app: %d", len(secrets.Items))
	}
	var live v1alpha3.MeshConfig
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fsmnames.MeshConfigName}, &live); err != nil {
		t.Fatal(err)
	}
	live.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha3.GroupVersion.String(), Kind: "MeshConfig"}
	resp = admit(t, vwc.Webhooks[0].ClientConfig.CABundle, fsmnames.ValidatorService+"."+ns+".svc", proc.validator, fsmnames.ValidatorPath,
		&live, metav1.GroupVersionResource{Group: v1alpha3.GroupVersion.Group, Version: v1alpha3.GroupVersion.Version, Resource: fsmnames.MeshConfigResource}, admissionv1.Update)
	if !resp.Allowed {
		t.Errorf("validator denied the chart's MeshConfig: %+v", resp.Result)
	}

	// Let informers of every kind start and report before reading the logs.
	time.Sleep(3 * time.Second)
	for _, line := range strings.Split(proc.logs.String(), "\n") {
		if l := strings.ToLower(line); strings.Contains(l, "forbidden") || strings.Contains(l, "cannot list") || strings.Contains(l, "cannot get") {
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			t.Errorf("the chart's RBAC refused the server: %s", line)
		}
	}
	if t.Failed() {
		return
	}
	// The server reads LimitRanges from its informers: the pod is refused
	// before any Secret, naming the LimitRange and the injected container.
	// Readiness does not wait for that informer, and until it has listed
	// pods are injected unchecked (each with its Secret): polled, with a
	// new pod each time, the denied one writing none.
	policedSecrets := func() int {
		var l corev1.SecretList
		if err := c.List(ctx, &l, client.InNamespace("policed")); err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	attempt := 0
	poll.Until(t, 30*time.Second, 250*time.Millisecond, "a pod the sidecar's LimitRange refuses denied", func() error {
		attempt++
		before := policedSecrets()
		resp := admitPod(t, proc, mwc.Webhooks[0].ClientConfig.CABundle, "policed", fmt.Sprintf("web-%d", attempt))
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, `LimitRange "ratio" (spec.limits[0]) refuses the injected container "sidecar"`) {
			return fmt.Errorf("injector response: allowed=%v result=%+v, want a denial naming the LimitRange and the sidecar", resp.Allowed, resp.Result)
		}
		if after := policedSecrets(); after != before {
			t.Errorf("%d Secrets written for the refused pod", after-before)
		}
		return nil
	})
	// The configurations stay adopted: nothing was created beside them.
	var all admv1.MutatingWebhookConfigurationList
	if err := c.List(ctx, &all, client.MatchingLabels{"app.kubernetes.io/instance": mesh}); err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != 1 {
		t.Errorf("%d mutating configurations for mesh %s, want the chart's one", len(all.Items), mesh)
	}

	// What the pre-delete hook does first: delete the configurations while
	// the servers still run. They must not come back (a failurePolicy=Fail
	// webhook recreated after uninstall would block the cluster).
	if err := c.Delete(ctx, &mwc); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, &vwc); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	for _, o := range []client.Object{&admv1.MutatingWebhookConfiguration{}, &admv1.ValidatingWebhookConfiguration{}} {
		name := mwcName
		if _, ok := o.(*admv1.ValidatingWebhookConfiguration); ok {
			name = vwcName
		}
		if err := c.Get(ctx, types.NamespacedName{Name: name}, o); !apierrors.IsNotFound(err) {
			t.Errorf("%s came back after deletion while the server runs (err %v)", name, err)
		}
	}

	// The pod of the bootstrap Secret appears (no injector is registered any
	// more, so nothing intercepts it) and is deleted: the server deletes the
	// Secret as the ServiceAccount, through the Secret policy, and never
	// writes an owner reference (issue 20, design (a)).
	if len(secrets.Items) != 1 {
		return
	}
	boot := secrets.Items[0]
	meshed := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app", Labels: map[string]string{"fsm-proxy-uuid": boot.Labels["fsm-proxy-uuid"]}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	if err := c.Create(ctx, meshed); err != nil {
		t.Fatal(err)
	}
	// While the pod exists its Secret stays, untouched.
	time.Sleep(2 * time.Second)
	var kept corev1.Secret
	if err := c.Get(ctx, client.ObjectKeyFromObject(&boot), &kept); err != nil {
		t.Fatalf("bootstrap Secret %s of a live pod: %v", boot.Name, err)
	}
	if len(kept.OwnerReferences) != 0 || kept.ResourceVersion != boot.ResourceVersion {
		t.Errorf("bootstrap Secret %s written while its pod lives (owners %+v, resourceVersion %s -> %s)", boot.Name, kept.OwnerReferences, boot.ResourceVersion, kept.ResourceVersion)
	}
	// An unscheduled pod is deleted at once (no kubelet to wait for).
	if err := c.Delete(ctx, meshed); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var s corev1.Secret
		err := c.Get(ctx, client.ObjectKeyFromObject(&boot), &s)
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootstrap Secret %s still there 30s after its pod %s was deleted", s.Name, meshed.Name)
		}
	}
	for _, line := range strings.Split(proc.logs.String(), "\n") {
		if strings.Contains(line, "denied request") {
			t.Errorf("an admission policy refused the server: %s", line)
		}
	}
	drainsOnLiveCaches(ctx, t, c, proc, mwc.Webhooks[0].ClientConfig.CABundle)
}

// drainsOnLiveCaches stops the server as the kubelet does (SIGTERM) and
// admits a pod during its drain (--shutdown-drain, 8 s) in a namespace
// created after the signal: the caches the handler reads still run until
// the listeners are down, so the pod is injected (a cache stopped at the
// signal knows no such namespace), and the process then exits cleanly.
func drainsOnLiveCaches(ctx context.Context, t *testing.T, c client.Client, proc *serveProc, caBundle []byte) {
	t.Helper()
	signalled := time.Now()
	go proc.stop()
	deadline := time.Now().Add(5 * time.Second)
	for proc.ready() {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still passes 5s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	createInjectedNamespace(ctx, t, c, "app-created-in-drain")
	// The informer's watch delivers the namespace within milliseconds;
	// the admissions are tried until the drain (8 s) is nearly over, as a
	// starved machine may take seconds.
	var resp *admissionv1.AdmissionResponse
	for end := signalled.Add(7 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp = admitPod(t, proc, caBundle, "app-created-in-drain", "admitted-in-drain")
		if resp.Allowed && len(resp.Patch) > 0 || time.Now().After(end) {
			break
		}
	}
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Errorf("a pod admitted during the drain in a namespace created after SIGTERM: allowed=%v patch=%d bytes result=%+v",
			resp.Allowed, len(resp.Patch), resp.Result)
	}
	select {
	case <-proc.gone:
	case <-time.After(60 * time.Second):
		t.Fatal("fsm-webhooks still runs 60s after SIGTERM")
	}
	if err := proc.err; err != nil {
		t.Errorf("fsm-webhooks exited with %v after SIGTERM", err)
	}
}

// createInjectedNamespace creates a namespace the mesh monitors and injects.
func createInjectedNamespace(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{"flomesh.io/sidecar-injection": "enabled"},
	}}); err != nil {
		t.Fatal(err)
	}
}

// admitPod posts the create of a one-container pod to the server's injector
// as the apiserver would.
func admitPod(t *testing.T, proc *serveProc, caBundle []byte, namespace, name string) *admissionv1.AdmissionResponse {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	return admit(t, caBundle, fsmnames.InjectorService+"."+ns+".svc", proc.injector, fsmnames.InjectorPath,
		pod, metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, admissionv1.Create)
}

// admit posts an AdmissionReview for obj to a webhook listener, trusting
// caBundle for serverName, and returns the response.
func admit(t *testing.T, caBundle []byte, serverName string, port int, path string, obj runtime.Object,
	gvr metav1.GroupVersionResource, op admissionv1.Operation) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	acc, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("chart-test-" + acc.GetName()),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  gvr,
		Namespace: acc.GetNamespace(),
		Name:      acc.GetName(),
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
		UserInfo:  authnv1.UserInfo{Username: "chart-test"},
	}
	if op == admissionv1.Update {
		req.OldObject = runtime.RawExtension{Raw: raw}
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no certificate")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
	res, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer func() { _ = res.Body.Close() }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(res.Body).Decode(&review); err != nil {
		t.Fatalf("POST %s: HTTP %d, decoding: %v", path, res.StatusCode, err)
	}
	if review.Response == nil || review.Response.UID != req.UID {
		t.Fatalf("POST %s: response %+v does not echo uid %s", path, review.Response, req.UID)
	}
	return review.Response
}

func validPEM(b []byte) bool {
	return bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) && len(b) > 200
}
