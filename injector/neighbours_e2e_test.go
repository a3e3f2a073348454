package injector_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp/reviewhttptest"
)

// TestQuotaLimitRangeAndLaterWebhooks: behind a real apiserver (its
// ResourceQuota and LimitRanger admission plugins on, as in a cluster), a
// namespace whose
// ResourceQuota leaves no room for one more Secret refuses the pod's
// bootstrap Secret. The pod create is refused naming the quota and what to
// do, as a denial (400, result denied), not as the injector's 500 that its
// operators are paged for; nothing is left behind. It also pins the quota
// plugin's text that the injector tells the refusal by. And a namespace
// LimitRange's defaults reach the injected containers although LimitRanger
// defaults before the webhooks run: the apiserver runs its built-in
// mutating plugins again once a webhook changed the object (with the
// chart's reinvocationPolicy Never too), so a quota demanding requests and
// limits admits an injected pod whose MeshConfig sets none. A later
// webhook that changes the pod gets the injector called again when it is
// registered with IfNeeded: it leaves the pod it injected as it is.
func TestQuotaLimitRangeAndLaterWebhooks(t *testing.T) {
	ctx := context.Background()
	env := startCoreEnv(t, fsmNamespace)
	h := tresorInjector(ctx, t, env, 4)
	const webhookName = "injector-quota-test"
	reg, servingCA := registerInjector(ctx, t, env.Client, h, webhookName)
	namespace := func(t *testing.T, name string) string {
		t.Helper()
		injectedNamespace(ctx, t, env.Client, name)
		return name
	}
	// envtest runs no kube-controller-manager: the quota's status, which the
	// admission plugin reads, is written here as its controller would.
	quota := func(t *testing.T, ns string, hard corev1.ResourceList) {
		t.Helper()
		rq := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: ns}, Spec: corev1.ResourceQuotaSpec{Hard: hard}}
		if err := env.Client.Create(ctx, rq); err != nil {
			t.Fatal(err)
		}
		used := corev1.ResourceList{}
		for name := range hard {
			used[name] = resource.MustParse("0")
		}
		rq.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: used}
		if err := env.Client.Status().Update(ctx, rq); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("no room for the Secret: denied naming the quota, nothing written", func(t *testing.T) {
		ns := namespace(t, "quota-full")
		quota(t, ns, corev1.ResourceList{"count/secrets": resource.MustParse("0")})
		denied := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultDenied)
		failed := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultError)
		err := env.Client.Create(ctx, pod("web", ns))
		t.Logf("create: %v", err)
		var status apierrors.APIStatus
		if !errors.As(err, &status) {
			t.Fatalf("create: %v, want the apiserver's refusal", err)
		}
		for _, want := range []string{"exceeded quota: tenant, requested: count/secrets=1", "each meshed pod needs a bootstrap Secret in its namespace"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
		if code := status.Status().Code; code != http.StatusBadRequest {
			t.Errorf("refused with status %d, want %d (a denial, not the injector's failure)", code, http.StatusBadRequest)
		}
		if d, f := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultDenied)-denied, reviewhttptest.Requests(t, webhookName, reviewhttp.ResultError)-failed; d != 1 || f != 0 {
			t.Errorf("counted %v denied, %v error; want 1 denied", d, f)
		}
		secrets := &corev1.SecretList{}
		if err := env.Client.List(ctx, secrets, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) != 0 {
			t.Errorf("%d Secrets left in %s", len(secrets.Items), ns)
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod web: %v, want NotFound", err)
		}
	})

	t.Run("a LimitRange's defaults reach the injected containers, which a compute quota then admits", func(t *testing.T) {
		ns := namespace(t, "quota-limitrange")
		q := resource.MustParse
		if err := env.Client.Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: ns},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				Default:        corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceMemory: q("256Mi")},
				DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("64Mi")}}}}}); err != nil {
			t.Fatal(err)
		}
		quota(t, ns, corev1.ResourceList{"requests.cpu": q("10"), "limits.memory": q("10Gi")})
		p := pod("web", ns)
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		injected := 0
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if c.Name == "fsm-init" || c.Name == "sidecar" {
				injected++
			}
			if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Limits.Memory().String() != "256Mi" {
				t.Errorf("container %s: resources %v, want the LimitRange's defaults", c.Name, c.Resources)
			}
		}
		if injected != 2 {
			t.Fatalf("not injected: %v", p.Spec)
		}
	})

	// A webhook registered after ours (Kyverno, a platform's own) that adds a
	// container: registered with IfNeeded (the chart says Never, as FSM),
	// the injector is called again with the pod it injected and must leave
	// it as it is: one sidecar, one fsm-init, one Secret, the pod's uuid.
	t.Run("reinvoked after a later webhook adds a container: injected once, one Secret", func(t *testing.T) {
		const addedBy = "e2e.flomesh.io/adds-container"
		addURL, addBundle := serveWebhook(ctx, t, servingCA, "/add-container", &webhook.Admission{Handler: admission.HandlerFunc(
			func(_ context.Context, req admission.Request) admission.Response {
				p := &corev1.Pod{}
				if err := json.Unmarshal(req.Object.Raw, p); err != nil {
					return admission.Errored(http.StatusBadRequest, err)
				}
				if slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "policy-agent" }) {
					return admission.Allowed("")
				}
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "policy-agent", Image: "agent"})
				raw, err := json.Marshal(p)
				if err != nil {
					return admission.Errored(http.StatusInternalServerError, err)
				}
				return admission.PatchResponseFromRaw(req.Object.Raw, raw)
			})})
		later := meshInjectorConfig(meshName, addURL, addBundle)
		later.Name = "zz-" + later.Name // called after ours: configurations run by name
		later.Webhooks[0].Name = "adds-container.e2e.flomesh.io"
		later.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{addedBy: "true"}}
		createForTest(ctx, t, env.Client, later)
		cur := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(reg), cur); err != nil {
			t.Fatal(err)
		}
		cur.Webhooks[0].ReinvocationPolicy = ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy)
		if err := env.Client.Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		ns := namespace(t, "reinvoked")
		nsObj := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
			t.Fatal(err)
		}
		nsObj.Labels[addedBy] = "true"
		if err := env.Client.Update(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "both webhooks to be called", func() (bool, error) {
			p := pod(injector.ProbePodName, ns)
			if err := env.Client.Create(ctx, p, client.DryRunAll); err != nil {
				return false, err
			}
			return len(p.Spec.Containers) == 3, nil
		})
		allowed := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultAllowed)
		p := pod("web", ns)
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if n := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultAllowed) - allowed; n != 1 {
			t.Errorf("the injector left %v pods as they were, want 1: its reinvocation", n)
		}
		var names []string
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		if want := []string{"app", "fsm-init", "policy-agent", "sidecar"}; !slices.Equal(names, want) {
			t.Errorf("containers %v, want %v", names, want)
		}
		secrets := &corev1.SecretList{}
		if err := env.Client.List(ctx, secrets, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) != 1 || secrets.Items[0].Name != injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel]) {
			var got []string
			for _, s := range secrets.Items {
				got = append(got, s.Name)
			}
			t.Errorf("Secrets %v, want only the pod's %s", got, injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel]))
		}
	})
}
