package install_test

import (
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestTwoMeshesOnAPIServer installs the chart twice on one apiserver, as
// two meshes share a cluster: mesh fsm in fsm-system and mesh other in
// other-system. Helm refuses to install a release over an object another
// release owns, so both installs and upgrades succeeding proves no
// cluster-scoped object (RBAC, webhook configurations, admission policies,
// the hooks' objects) collides; uninstalling one leaves the other's; each
// mesh's admission policies leave the other mesh's servers alone.
func TestTwoMeshesOnAPIServer(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	const otherNS, otherMesh = "other-system", "other"
	helmA := newHelm(t, env)
	helmB, err := charttest.NewCluster(env.KubeConfig, t.TempDir(), otherNS)
	if err != nil {
		t.Fatal(err)
	}
	valuesB := map[string]any{"fsm": map[string]any{"meshName": otherMesh}}
	if _, err := helmA.Install(ctx, nil); err != nil {
		t.Fatalf("install mesh %s: %v", mesh, err)
	}
	if _, err := helmB.Install(ctx, valuesB); err != nil {
		t.Fatalf("install mesh %s beside mesh %s: %v", otherMesh, mesh, err)
	}
	// The pre-upgrade hooks' cluster-scoped objects too.
	if _, err := helmA.Upgrade(ctx, nil); err != nil {
		t.Fatalf("upgrade mesh %s: %v", mesh, err)
	}
	if _, err := helmB.Upgrade(ctx, valuesB); err != nil {
		t.Fatalf("upgrade mesh %s: %v", otherMesh, err)
	}
	c := env.Client
	for _, o := range []client.Object{
		&v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigName, Namespace: ns}},
		&v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigName, Namespace: otherNS}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("%T %s/%s: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}

	// Mesh other's servers write a bootstrap Secret in a namespace mesh
	// other injects: mesh fsm's policy must not judge them.
	admin := env.Clientset
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app-other",
		Labels: map[string]string{fsmnames.MonitoredByLabel: otherMesh}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + otherNS + ":fsm-webhooks",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + otherNS, "system:authenticated"}}
	saB, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // RBAC informers catching up
	for {
		_, err := saB.CoreV1().Secrets("app-other").Create(ctx, bootstrapSecret(t, "app-other", otherMesh, "b1"), metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mesh %s's servers creating their bootstrap Secret: %v", otherMesh, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// ... nor may mesh other's servers write mesh fsm's.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app-fsm",
		Labels: map[string]string{fsmnames.MonitoredByLabel: mesh}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := saB.CoreV1().Secrets("app-fsm").Create(ctx, bootstrapSecret(t, "app-fsm", mesh, "a1"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("mesh %s's servers creating mesh %s's bootstrap Secret: %v, want Forbidden", otherMesh, mesh, err)
	}

	// Uninstalling mesh fsm (hooks are run elsewhere) leaves mesh other's
	// objects.
	if err := helmA.Uninstall(false); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-" + otherMesh}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-" + otherMesh}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-" + otherMesh + "-conversion-lease", Namespace: "kube-system"}},
		&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MutatingConfigurationName(otherMesh)}},
		&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.ValidatingConfigurationName(otherMesh)}},
		&admv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-" + otherMesh + "-secret-writes"}},
		&admv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-" + otherMesh + "-registration"}},
		&v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigName, Namespace: otherNS}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("after uninstalling mesh %s: %T %s: %v", mesh, o, o.GetName(), err)
		}
	}
}
