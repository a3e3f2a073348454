package install_test

import (
	"os"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestFSMValuesOnAPIServer: FSM v1.5.1's own values file installs unchanged on
// a real kube-apiserver, and an upgrade to a user's typical FSM overrides
// lands the honoured keys in the live objects (test/chart's
// TestFSMValuesHonoured covers every key as rendered).
func TestFSMValuesOnAPIServer(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	helm := newHelm(t, env)
	c := env.Client

	if _, err := helm.Install(ctx, valuesFile(t, "../../../../shared/fsm-reference/fsm-values-v1.5.1.yaml")); err != nil {
		t.Fatalf("helm install -f fsm-values-v1.5.1.yaml: %v", err)
	}
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, dep); err != nil {
		t.Fatal(err)
	}
	// FSM's file: fsm.injector.replicaCount 1, resource limits cpu 1, memory 512M.
	if got := *dep.Spec.Replicas; got != 1 {
		t.Errorf("replicas %d, want FSM's fsm.injector.replicaCount 1", got)
	}
	if got := dep.Spec.Template.Spec.Containers[0].Resources.Limits.Memory(); got.Cmp(resource.MustParse("512M")) != 0 {
		t.Errorf("memory limit %s, want FSM's fsm.injector.resource 512M", got)
	}
	err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &policyv1.PodDisruptionBudget{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("PodDisruptionBudget with FSM's enablePodDisruptionBudget false: %v", err)
	}

	if _, err := helm.Upgrade(ctx, valuesFile(t, "../testdata/fsm-values-typical-overrides.yaml")); err != nil {
		t.Fatalf("helm upgrade -f fsm-values-typical-overrides.yaml: %v", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, dep); err != nil {
		t.Fatal(err)
	}
	if got := *dep.Spec.Replicas; got != 3 {
		t.Errorf("replicas %d, want the overrides' fsm.injector.replicaCount 3", got)
	}
	if got := dep.Spec.Template.Labels["team"]; got != "mesh" {
		t.Errorf("pod label team=%q, want the overrides' fsm.injector.podLabels mesh", got)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &policyv1.PodDisruptionBudget{}); err != nil {
		t.Errorf("PodDisruptionBudget with enablePodDisruptionBudget true: %v", err)
	}
	mwc := &admv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, mwc); err != nil {
		t.Fatal(err)
	}
	if got := *mwc.Webhooks[0].TimeoutSeconds; got != 25 {
		t.Errorf("injector timeoutSeconds %d, want the overrides' fsm.injector.webhookTimeoutSeconds 25", got)
	}
}

func valuesFile(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := charttest.Values(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}
