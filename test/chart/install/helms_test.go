package install_test

import (
	"context"
	"slices"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestHelmsOnAPIServer is an FSM user's release lifecycle with each Helm
// SDK on its own apiserver: install with FSM v1.5.1's values file, an
// upgrade to the typical overrides whose pre-upgrade crd-upgrade hook
// (`fsm-webhooks install-crds` as the hook's ServiceAccount; charttest runs
// the Job in the absent kubelet's place) brings a stale MeshConfig CRD to the
// chart's while keeping the converter's stanza, a rollback, and an uninstall.
func TestHelmsOnAPIServer(t *testing.T) {
	for _, h := range charttest.Helms() {
		t.Run(h.Name(), func(t *testing.T) { releaseLifecycle(t, h) })
	}
}

func releaseLifecycle(t *testing.T, h charttest.Helm) {
	ctx, env := startAPIServer(t, 6*time.Minute)
	c := env.Client
	helm, err := h.Connect(env.KubeConfig, t.TempDir(), ns)
	if err != nil {
		t.Fatal(err)
	}

	rel, err := helm.Install(ctx, valuesFile(t, "../../../../shared/fsm-reference/fsm-values-v1.5.1.yaml"))
	if err != nil {
		t.Fatalf("helm install -f fsm-values-v1.5.1.yaml: %v", err)
	}
	if rel.Version != 1 || rel.Status != "deployed" {
		t.Fatalf("install: revision %d %s", rel.Version, rel.Status)
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fsm-injector", Namespace: ns}},
		&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
		&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
		&apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crdName}},
		&v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "fsm-mesh-config", Namespace: ns}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("after install: %T %s: %v", o, o.GetName(), err)
		}
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: charttest.CRDUpgradeJob}, &batchv1.Job{}); !apierrors.IsNotFound(err) {
		t.Errorf("crd-upgrade Job ran on install (err %v); it is a pre-upgrade hook only", err)
	}

	// An older release's CRD (FSM v1.5.1's schemas stand in for it, Helm
	// having left crds/ alone since), the converter's conversion stanza on
	// it, the injector's caBundle on its configuration.
	conversion := convertedCRD(ctx, t, c)
	bundle := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	patch := []byte(`{"webhooks":[{"name":"fsm-inject.k8s.io","clientConfig":{"caBundle":"` + b64(bundle) + `"}}]}`)
	if err := c.Patch(ctx, &admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
		client.RawPatch(types.StrategicMergePatchType, patch), client.FieldOwner("fsm-webhooks")); err != nil {
		t.Fatal(err)
	}
	var mcBefore v1alpha3.MeshConfig
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}, &mcBefore); err != nil {
		t.Fatal(err)
	}

	rel, err = helm.Upgrade(ctx, valuesFile(t, "../testdata/fsm-values-typical-overrides.yaml"))
	if err != nil {
		t.Fatalf("helm upgrade -f fsm-values-typical-overrides.yaml: %v", err)
	}
	if rel.Version != 2 || rel.Status != "deployed" {
		t.Errorf("upgrade: revision %d %s", rel.Version, rel.Status)
	}
	if hook := rel.FindHook("Job", charttest.CRDUpgradeJob); hook == nil || hook.Phase != "Succeeded" || !slices.Equal(hook.Events, []string{"pre-upgrade"}) {
		t.Errorf("crd-upgrade hook in the release: %+v", hook)
	}
	assertChartCRD(ctx, t, c, conversion)
	// hook-succeeded: nothing of the hook outlives it.
	for _, o := range []client.Object{
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob, Namespace: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob, Namespace: ns}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob + "." + mesh}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: charttest.CRDUpgradeJob + "." + mesh}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s left after a successful hook (err %v)", o, o.GetName(), err)
		}
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &dep); err != nil {
		t.Fatal(err)
	}
	if got := *dep.Spec.Replicas; got != 3 {
		t.Errorf("replicas %d after upgrade, want the overrides' fsm.injector.replicaCount 3", got)
	}
	var mwc admv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwc); err != nil {
		t.Fatal(err)
	}
	if got := *mwc.Webhooks[0].TimeoutSeconds; got != 25 {
		t.Errorf("injector timeoutSeconds %d, want the overrides' 25", got)
	}
	if string(mwc.Webhooks[0].ClientConfig.CABundle) != string(bundle) {
		t.Errorf("upgrade changed the injector's caBundle to %q", mwc.Webhooks[0].ClientConfig.CABundle)
	}
	var mcAfter v1alpha3.MeshConfig
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}, &mcAfter); err != nil {
		t.Fatal(err)
	}
	if mcAfter.ResourceVersion != mcBefore.ResourceVersion {
		t.Error("upgrade rewrote the live MeshConfig")
	}

	// Rollback runs no CRD hook: the newer CRD stays (it serves the older
	// release's objects too, the versions being the same).
	if err := helm.Rollback(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &dep); err != nil {
		t.Fatal(err)
	}
	if got := *dep.Spec.Replicas; got != 1 {
		t.Errorf("replicas %d after rollback to revision 1, want FSM's 1", got)
	}
	assertChartCRD(ctx, t, c, conversion)

	if err := helm.Uninstall(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fsm-injector", Namespace: ns}},
		&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
		&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
	} {
		err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
		if !apierrors.IsNotFound(err) && o.GetDeletionTimestamp() == nil {
			t.Errorf("%T %s still present after uninstall (err %v)", o, o.GetName(), err)
		}
	}
	// Helm never deletes crds/: the MeshConfig objects stay readable.
	assertChartCRD(ctx, t, c, conversion)
}

// convertedCRD replaces the installed CRD's versions with FSM v1.5.1's (whose
// schemas differ from the chart's) and sets a conversion stanza as the
// converter would; it returns that stanza.
func convertedCRD(ctx context.Context, t *testing.T, c client.Client) *apiextv1.CustomResourceConversion {
	t.Helper()
	var old apiextv1.CustomResourceDefinition
	for _, u := range decodeFile(t, fsmReference("crds/config.flomesh.io_meshconfigs.yaml")) {
		if u.GetName() == crdName {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(old.Spec.Versions) == 0 {
		t.Fatal("FSM's MeshConfig CRD not found in the reference")
	}
	conversion := converterConversion(t)
	var crd apiextv1.CustomResourceDefinition
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
			return err
		}
		crd.Spec.Versions = old.Spec.Versions
		crd.Spec.Conversion = conversion
		return c.Update(ctx, &crd, client.FieldOwner("older-release"))
	}); err != nil {
		t.Fatal(err)
	}
	if sameVersions(crd.Spec.Versions, chartCRD(t).Spec.Versions) {
		t.Fatal("FSM's CRD already has the chart's schemas: the upgrade would prove nothing")
	}
	return conversion
}

// assertChartCRD: the live CRD has the chart's versions and schemas, applied
// by install-crds' field manager, and the converter's stanza unchanged.
func assertChartCRD(ctx context.Context, t *testing.T, c client.Client, conversion *apiextv1.CustomResourceConversion) {
	t.Helper()
	var got apiextv1.CustomResourceDefinition
	if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &got); err != nil {
		t.Fatal(err)
	}
	if !sameVersions(got.Spec.Versions, chartCRD(t).Spec.Versions) {
		t.Error("MeshConfig CRD versions are not the chart's: the crd-upgrade hook did not apply them")
	}
	if !equality.Semantic.DeepEqual(got.Spec.Conversion, conversion) {
		t.Errorf("conversion stanza changed: %+v", got.Spec.Conversion)
	}
	applied := false
	for _, m := range got.ManagedFields {
		applied = applied || (m.Manager == chart.CRDFieldManager && m.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !applied {
		t.Errorf("no server-side apply by %s on the CRD", chart.CRDFieldManager)
	}
}

func chartCRD(t *testing.T) *apiextv1.CustomResourceDefinition {
	t.Helper()
	crds, err := chart.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if crd.Name == crdName {
			return crd
		}
	}
	t.Fatalf("chart embeds no %s", crdName)
	return nil
}

func sameVersions(a, b []apiextv1.CustomResourceDefinitionVersion) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Served != b[i].Served || a[i].Storage != b[i].Storage ||
			!equality.Semantic.DeepEqual(a[i].Schema, b[i].Schema) {
			return false
		}
	}
	return true
}
