package install_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// preDeleteHook runs `fsm-webhooks uninstall-hook` with the arguments of the
// chart's pre-delete Job (no kubelet runs the Job here) after the servers
// adopted the chart: the webhook configurations go first, the Deployment is
// scaled to zero, the CRD stops pointing at the converter and the MeshConfig
// goes last. A second run (a retried hook) succeeds and changes nothing.
func preDeleteHook(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildServer(ctx, t, dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c := env.Client
	crd := &apiextv1.CustomResourceDefinition{}
	if err := c.Get(ctx, types.NamespacedName{Name: crdName}, crd); err != nil {
		t.Fatal(err)
	}
	if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextv1.WebhookConverter {
		t.Fatalf("precondition: the converter should have set strategy Webhook, got %+v", crd.Spec.Conversion)
	}
	for run := 1; run <= 2; run++ {
		cmd := exec.CommandContext(ctx, bin, "uninstall-hook", "--kubeconfig="+kubeconfig, "--fsm-namespace="+ns,
			"--mesh-name="+mesh, "--deployment=fsm-webhooks", "--mesh-config-name="+fsmnames.MeshConfigName, "--timeout=60s")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("uninstall-hook run %d: %v\n%s", run, err, out)
		}
		for _, gone := range []struct {
			obj client.Object
			key types.NamespacedName
		}{
			{&admv1.MutatingWebhookConfiguration{}, types.NamespacedName{Name: mwcName}},
			{&admv1.ValidatingWebhookConfiguration{}, types.NamespacedName{Name: vwcName}},
			{&v1alpha3.MeshConfig{}, types.NamespacedName{Namespace: ns, Name: fsmnames.MeshConfigName}},
		} {
			if err := c.Get(ctx, gone.key, gone.obj); !apierrors.IsNotFound(err) {
				t.Errorf("run %d: %T %s still present (err %v)", run, gone.obj, gone.key, err)
			}
		}
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, crd); err != nil {
			t.Fatal(err)
		}
		if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextv1.NoneConverter || crd.Spec.Conversion.Webhook != nil {
			t.Errorf("run %d: CRD conversion = %+v, want strategy None without webhook", run, crd.Spec.Conversion)
		}
		dep := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, dep); err != nil {
			t.Fatal(err)
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
			t.Errorf("run %d: Deployment replicas = %v, want 0", run, dep.Spec.Replicas)
		}
	}
}
