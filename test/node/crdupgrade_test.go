//go:build e2enode

package node_test

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestCRDUpgradeOnNode: `helm upgrade` runs the chart's crd-upgrade hook Job
// under the kubelet (the envtest chart tests only emulate it): the image's
// `fsm-webhooks install-crds`, as the hook's ServiceAccount, server-side
// applies the MeshConfig CRD, the Job completes, and Helm then deletes it
// with its RBAC.
func TestCRDUpgradeOnNode(t *testing.T) {
	ctx, c, helm := startChart(t)
	if err := apiextv1.AddToScheme(c.Client.Scheme()); err != nil {
		t.Fatal(err)
	}
	crdName := "meshconfigs.config.flomesh.io"
	appliedByInstallCRDs := func() bool {
		var crd apiextv1.CustomResourceDefinition
		if err := c.Client.Get(ctx, client.ObjectKey{Name: crdName}, &crd); err != nil {
			t.Fatal(err)
		}
		for _, m := range crd.ManagedFields {
			if m.Manager == chart.CRDFieldManager && m.Operation == metav1.ManagedFieldsOperationApply {
				return true
			}
		}
		return false
	}
	if appliedByInstallCRDs() {
		t.Fatalf("%s applied the CRD before any upgrade", chart.CRDFieldManager)
	}

	start := time.Now()
	rel, err := helm.Upgrade(ctx, map[string]any{"fsm": map[string]any{"webhooks": map[string]any{"replicaCount": 1}}})
	if err != nil {
		t.Fatalf("helm upgrade: %v (logs in %s)", err, c.LogDir)
	}
	t.Logf("helm upgrade with the crd-upgrade hook took %s", time.Since(start).Round(100*time.Millisecond))
	ran := false
	for _, h := range rel.Hooks {
		if h.Kind == "Job" && h.Name == charttest.CRDUpgradeJob {
			ran = h.LastRun.Phase.String() == "Succeeded"
		}
	}
	if !ran {
		t.Errorf("release %d records no succeeded %s hook", rel.Version, charttest.CRDUpgradeJob)
	}
	if !appliedByInstallCRDs() {
		t.Errorf("no server-side apply by %s on %s after the upgrade", chart.CRDFieldManager, crdName)
	}
	for _, o := range []client.Object{
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob, Namespace: chartNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob, Namespace: chartNS}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob + "-fsm"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob + "-fsm"}},
	} {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s left after the hook succeeded (err %v)", o, o.GetName(), err)
		}
	}
}
