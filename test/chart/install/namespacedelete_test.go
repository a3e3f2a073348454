package install_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestNamespaceDeletionNotBlockedByTheValidator: deleting the fsm namespace
// directly (not helm uninstall) lets the namespace controller delete the
// MeshConfig after it has deleted the validator's pods. The chart's
// MeshConfig webhook (failurePolicy Fail) must not be asked then: a call
// nobody answers would refuse the DELETE and leave the namespace Terminating
// forever. envtest has no controller-manager, so the namespace controller's
// DELETE is made with its identities (impersonated) against the chart's
// rendered configuration and Service, which has no endpoints here (endpoint
// routing, so an unanswerable call fails at once as a refused connection
// would). Everyone else's DELETE is still sent to the validator, and refused
// while it cannot answer.
func TestNamespaceDeletionNotBlockedByTheValidator(t *testing.T) {
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()},
		Client:            client.Options{Scheme: scheme(t)},
		APIServerFlags:    map[string]string{"enable-aggregator-routing": "true"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := env.Client

	_, r := renderYAML(t, "{}")
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kcm-namespace-controller"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:controller:namespace-controller"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:kube-controller-manager"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	// The MeshConfig first (the chart's pre-install hook), then the Service
	// and the configuration.
	for _, o := range []struct{ kind, name string }{
		{"MeshConfig", fsmnames.MeshConfigName},
		{"Service", fsmnames.ValidatorService},
		{"ValidatingWebhookConfiguration", vwcName},
	} {
		u := r.Find(o.kind, o.name)
		if u == nil {
			t.Fatalf("%s %s not rendered", o.kind, o.name)
		}
		u = u.DeepCopy()
		u.SetAnnotations(nil) // Helm's hook annotations
		if err := c.Create(ctx, u); err != nil {
			t.Fatalf("creating %s %s: %v", o.kind, o.name, err)
		}
	}
	meshConfig := func() client.Object {
		return &v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fsmnames.MeshConfigName}}
	}
	as := func(user string, groups ...string) client.Client {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
		cl, err := client.New(cfg, client.Options{Scheme: scheme(t)})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	unanswered := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), `failed calling webhook "`+validator.MeshConfigWebhookName+`"`)
	}

	// An ordinary user's DELETE is sent to the validator, which cannot
	// answer (polled: the apiserver loads a new configuration within
	// seconds).
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.Delete(ctx, meshConfig(), client.DryRunAll)
		if unanswered(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster admin's DELETE of the MeshConfig: %v, want it refused: the validator cannot be called", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The namespace is deleted: envtest has no namespace controller, so it
	// stays Terminating and its deletes are made below as its identities.
	if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, meshConfig(), client.DryRunAll); !unanswered(err) {
		t.Errorf("cluster admin's DELETE in the terminating namespace: %v, want it sent to the validator (and refused: unanswered)", err)
	}
	// A controller-manager without --use-service-account-credentials
	// deletes as its own user, granted the controllers' roles (dry run: the
	// MeshConfig stays for the next). Polled while RBAC catches up.
	kcm := as("system:kube-controller-manager")
	deadline = time.Now().Add(time.Minute)
	for {
		err := kcm.Delete(ctx, meshConfig(), client.DryRunAll)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "cannot delete resource") || time.Now().After(deadline) {
			t.Errorf("DELETE as system:kube-controller-manager: %v, want it not sent to the validator", err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	nsController := as("system:serviceaccount:kube-system:namespace-controller", "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err := nsController.Delete(ctx, meshConfig()); err != nil {
		t.Fatalf("DELETE as the namespace controller: %v, want it not sent to the validator (the namespace would stay Terminating)", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(meshConfig()), meshConfig()); !apierrors.IsNotFound(err) {
		t.Errorf("MeshConfig after the namespace controller's DELETE: %v, want NotFound", err)
	}
}
