package install_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestServerControllerWriterUnderChartRBAC runs the real `fsm-webhooks
// serve` as the chart's ServiceAccount (impersonated), under the chart's RBAC
// and admission policies, in the configuration serverAdoptsChart does not
// run: fsm.webhooks.bootstrapSecretWriter=controller, with the pod IPs the
// Deployment passes (FSM_POD_IPS), so the converter's route gate reads
// fsm-bootstrap's EndpointSlices and Service. The writer controller creates
// the bootstrap Secret once its pod is stored, the sweep deletes it with the
// pod, the converter publishes the CRD's conversion stanza after its
// handshake through the Service's cluster IP, and nothing the server does is
// refused.
//
// envtest runs no kube-proxy, so a cluster IP from its default range
// (10.0.0.0/24) reaches nothing: the handshake never answered and the
// stanza came only after the gate's 30 s fallback (routeProofWait), half of
// this test's 60-70 s. Cluster IPs from 127.0.0.0/24 reach a listener bound
// to every address, as kube-proxy would route them to the pod.
func TestServerControllerWriterUnderChartRBAC(t *testing.T) {
	ctx, env := startAPIServerWith(t, 8*time.Minute, map[string]string{"service-cluster-ip-range": "127.0.0.0/24"})
	helm := newHelm(t, env)
	vals, err := charttest.Values("fsm: {webhooks: {bootstrapSecretWriter: controller}}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.Install(ctx, vals); err != nil {
		t.Fatal(err)
	}
	c := env.Client
	bin := buildServer(ctx, t, t.TempDir())
	t.Setenv("FSM_POD_IPS", "10.1.2.3")
	// Every address, for the cluster IP; no drain at SIGTERM: nothing is
	// checked after the body, and the 8 s default only delayed the end.
	proc := startServe(ctx, t, env, bin, "--webhook-bind-host=0.0.0.0", "--shutdown-drain=0s")
	var mwc admv1.MutatingWebhookConfiguration
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwc); err != nil {
			t.Fatal(err)
		}
		if validPEM(mwc.Webhooks[0].ClientConfig.CABundle) && proc.readyz("injector") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", proc.logs.String())
		}
	}
	createInjectedNamespace(ctx, t, c, "app")
	resp := admitPod(t, proc, mwc.Webhooks[0].ClientConfig.CABundle, "app", "web")
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("injector response: %+v", resp)
	}
	m := regexp.MustCompile(`fsm-proxy-uuid":"([0-9a-f-]+)"`).FindSubmatch(resp.Patch)
	if m == nil {
		t.Fatalf("no uuid in patch %s", resp.Patch)
	}
	id := string(m[1])
	// No webhook is reachable from envtest's apiserver: unregister them.
	_ = c.Delete(ctx, &mwc)
	_ = c.Delete(ctx, &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app", Labels: map[string]string{"fsm-proxy-uuid": id}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "app", Name: fsmnames.BootstrapSecretName(id)}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := c.Get(ctx, key, &corev1.Secret{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller writer did not write %s", key)
		}
	}
	if err := c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := c.Get(ctx, key, &corev1.Secret{}); apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Secret %s not swept", key)
		}
	}
	// The converter's route gate: an EndpointSlice of fsm-bootstrap listing
	// this pod makes it read the Service (get) and dial its cluster IP.
	ready := true
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "fsm-bootstrap-probe", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "fsm-bootstrap"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if err := c.Create(ctx, eps); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var crd apiextv1.CustomResourceDefinition
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
			t.Fatal(err)
		}
		if crd.Spec.Conversion != nil && crd.Spec.Conversion.Webhook != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no conversion stanza:\n%s", proc.logs.String())
		}
	}
	if strings.Contains(proc.logs.String(), "without a handshake through its Service") {
		t.Errorf("the conversion stanza was published after the route gate's fallback, not a handshake through the Service's cluster IP:\n%s", proc.logs.String())
	}
	time.Sleep(3 * time.Second)
	// RBAC's refusal says "forbidden: User ... cannot <verb> resource", an
	// admission policy's "denied request"; "Operation cannot be fulfilled"
	// is a conflict, not a refusal.
	refused := regexp.MustCompile(`forbidden|cannot [a-z]+ resource|denied request`)
	for _, line := range strings.Split(proc.logs.String(), "\n") {
		if refused.MatchString(strings.ToLower(line)) {
			t.Errorf("the chart's RBAC or policies refused the server: %.400s", line)
		}
	}
}
