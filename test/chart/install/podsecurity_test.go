package install_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// warnings collects the apiserver's warnings (Pod Security Admission warns
// on a Deployment's or Job's pod template, and enforces on the pod).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// TestRestrictedNamespace installs and upgrades the chart into an fsm
// namespace enforcing the restricted Pod Security Standard (as hardened
// clusters label it), with every option that changes a pod on (Vault with a
// private CA and a client certificate: two Secret volumes; the
// NetworkPolicy), under a site policy requiring a label on every pod (an
// admission policy standing in for Kyverno's require-labels), met with
// fsm.webhooks.podLabels. envtest has no controller-manager, so no pod is
// ever made from the Deployment or the hook Jobs: each workload (the
// servers', the pre-upgrade and pre-delete hooks') is created as a
// server-side dry run, which must draw no PodSecurity warning, and a pod
// from each template is created as a dry run, which PodSecurity and the
// site policy must admit (the hooks' pods, without the servers' pod labels,
// were refused: helm upgrade and uninstall failed).
func TestRestrictedNamespace(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}); err != nil {
		t.Fatal(err)
	}
	values, r := renderYAML(t, `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.vault.svc, protocol: https, secret: {name: vault-token, key: token}, caSecret: {name: vault-ca}, clientCertSecret: {name: fsm-webhooks-vault-client}}
  webhooks:
    networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.0/28]}
    podLabels: {cost-center: "42"}
`)
	helm := newHelm(t, env)
	if _, err := helm.Install(ctx, values); err != nil {
		t.Fatalf("helm install into a restricted namespace: %v", err)
	}
	// The pre-upgrade hook's Job is created here (and run by charttest's
	// stand-in kubelet).
	if _, err := helm.Upgrade(ctx, values); err != nil {
		t.Fatalf("helm upgrade in a restricted namespace: %v", err)
	}

	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	requireLabel(ctx, t, cs, r)
	var templates []corev1.PodTemplateSpec
	for _, o := range append(append([]*unstructured.Unstructured{}, r.Objects...), r.Hooks...) {
		var tmpl corev1.PodTemplateSpec
		var create func(context.Context) error
		switch o.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructured(t, o, &d)
			d.Name += "-psa"
			tmpl = d.Spec.Template
			create = func(ctx context.Context) error {
				_, err := cs.AppsV1().Deployments(ns).Create(ctx, &d, dry)
				return err
			}
		case "Job":
			var j batchv1.Job
			fromUnstructured(t, o, &j)
			j.Name += "-psa"
			tmpl = j.Spec.Template
			create = func(ctx context.Context) error {
				_, err := cs.BatchV1().Jobs(ns).Create(ctx, &j, dry)
				return err
			}
		default:
			continue
		}
		templates = append(templates, tmpl)
		t.Run(o.GetKind()+" "+o.GetName(), func(t *testing.T) {
			w.take()
			if err := create(ctx); err != nil {
				t.Fatalf("dry-run create: %v", err)
			}
			for _, text := range w.take() {
				if strings.Contains(text, "PodSecurity") {
					t.Errorf("warning: %s", text)
				}
			}
			pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
			pod.Name = o.GetName() + "-psa"
			// The hooks' ServiceAccounts exist only while they run; the
			// ServiceAccount admission plugin refuses a pod naming a missing
			// one, which Pod Security does not look at.
			pod.Spec.ServiceAccountName = "fsm-webhooks"
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, dry); err != nil {
				t.Errorf("a pod from %s %s refused: %v", o.GetKind(), o.GetName(), err)
			}
		})
	}
	// The servers and both hooks (pre-upgrade, pre-delete).
	if len(templates) != 3 {
		t.Errorf("%d pod templates rendered, want 3 (Deployment, crd-upgrade and uninstall Jobs)", len(templates))
	}
}

func fromUnstructured(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

// requireLabel installs the site's policy (pods in the fsm namespace carry a
// cost-center label) and waits until the apiserver enforces it: a pod
// without the label, otherwise the servers', is refused.
func requireLabel(ctx context.Context, t *testing.T, cs kubernetes.Interface, r *charttest.Rendered) {
	t.Helper()
	policy := &admv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "require-cost-center"},
		Spec: admv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admv1.Fail),
			MatchConstraints: &admv1.MatchResources{ResourceRules: []admv1.NamedRuleWithOperations{{
				RuleWithOperations: admv1.RuleWithOperations{
					Operations: []admv1.OperationType{admv1.Create},
					Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admv1.Validation{{
				Expression: "has(object.metadata.labels) && 'cost-center' in object.metadata.labels",
				Message:    "pods must carry a cost-center label",
			}},
		},
	}
	binding := &admv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "require-cost-center"},
		Spec: admv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admv1.ValidationAction{admv1.Deny},
			MatchResources: &admv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
			}},
		},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	fromUnstructured(t, r.Find("Deployment", "fsm-webhooks"), &d)
	canary := &corev1.Pod{ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(), Spec: d.Spec.Template.Spec}
	canary.Name = "canary"
	delete(canary.Labels, "cost-center")
	deadline := time.Now().Add(time.Minute) // liveness only: the policy's informer
	for {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, canary, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "cost-center") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the site's label policy not in force within a minute (a pod without the label: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
