// Package install_test installs the fsm-webhooks chart with the Helm v4 SDK
// on a real kube-apiserver (envtest: no kubelet, so workloads are created but
// never run) and checks what lands in the cluster, the RBAC it grants, and
// that upgrades and uninstall leave the servers' fields and nothing else.
package install_test

import (
	"encoding/base64"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

const (
	ns      = "fsm-system"
	mesh    = "fsm"
	saUser  = "system:serviceaccount:fsm-system:fsm-webhooks"
	crdName = fsmnames.MeshConfigCRDName
)

var (
	mwcName = fsmnames.MutatingConfigurationName(mesh)
	vwcName = fsmnames.ValidatingConfigurationName(mesh)
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextv1.AddToScheme, v1alpha3.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestChartOnAPIServer shares one apiserver across the install, RBAC,
// upgrade and uninstall steps, which depend on one another in that order.
func TestChartOnAPIServer(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	helm := newHelm(t, env)
	if _, err := helm.Install(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// The access reviews and the writes as the ServiceAccount below need
	// the authorizer to have caught up with the chart's bindings.
	awaitRBAC(ctx, t, env)
	c := env.Client

	t.Run("objects exist", func(t *testing.T) {
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.InjectorService, Namespace: ns}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.ValidatorService, Namespace: ns}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.ConverterService, Namespace: ns}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
			&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
			&apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crdName}},
			&admv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm-secret-writes"}},
			&admv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm-secret-writes"}},
			&admv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm-registration"}},
			&admv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm-registration"}},
			&v1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigName, Namespace: ns}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Errorf("%T %s: %v", o, o.GetName(), err)
			}
		}
		// The pre-delete hook's objects exist only during uninstall.
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks-uninstall"}, &rbacv1.Role{}); !apierrors.IsNotFound(err) {
			t.Errorf("uninstall hook Role present after install (err %v)", err)
		}
	})

	t.Run("webhook configurations have no caBundle", func(t *testing.T) {
		var m admv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Webhooks) != 1 || len(m.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Errorf("mutating webhooks %+v", m.Webhooks)
		}
		var v admv1.ValidatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: vwcName}, &v); err != nil {
			t.Fatal(err)
		}
		// The policy webhook and the MeshConfig webhook, one server.
		if len(v.Webhooks) != 2 || v.Webhooks[0].Name != validator.PolicyWebhookName || v.Webhooks[1].Name != validator.MeshConfigWebhookName {
			t.Errorf("validating webhooks %+v", v.Webhooks)
		}
		for _, w := range v.Webhooks {
			if len(w.ClientConfig.CABundle) != 0 {
				t.Errorf("validating webhook %s has a caBundle", w.Name)
			}
		}
	})

	t.Run("CRD has no conversion webhook until the converter serves", func(t *testing.T) {
		var crd apiextv1.CustomResourceDefinition
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
			t.Fatal(err)
		}
		if crd.Spec.Conversion != nil && crd.Spec.Conversion.Strategy != apiextv1.NoneConverter {
			t.Errorf("conversion %+v", crd.Spec.Conversion)
		}
	})

	t.Run("RBAC grants exactly what the servers need", func(t *testing.T) {
		tests := []struct {
			name    string
			attrs   authzv1.ResourceAttributes
			allowed bool
		}{
			{"create bootstrap Secret in an app namespace", authzv1.ResourceAttributes{Namespace: "app", Verb: "create", Resource: "secrets"}, true},
			{"get a bootstrap Secret (reinvocation or a copy of the pod)", authzv1.ResourceAttributes{Namespace: "app", Verb: "get", Resource: "secrets", Name: fsmnames.BootstrapSecretName("x")}, true},
			{"patch a bootstrap Secret after a root rotation (the trust controller)", authzv1.ResourceAttributes{Namespace: "app", Verb: "patch", Resource: "secrets", Name: fsmnames.BootstrapSecretName("x")}, true},
			{"update a bootstrap Secret (the servers patch them)", authzv1.ResourceAttributes{Namespace: "app", Verb: "update", Resource: "secrets", Name: fsmnames.BootstrapSecretName("x")}, false},
			{"delete an orphaned bootstrap Secret", authzv1.ResourceAttributes{Namespace: "app", Verb: "delete", Resource: "secrets", Name: fsmnames.BootstrapSecretName("x")}, true},
			{"list Secrets for orphan cleanup", authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, true},
			{"deletecollection of Secrets", authzv1.ResourceAttributes{Namespace: "app", Verb: "deletecollection", Resource: "secrets"}, false},
			{"update the CA Secret in the fsm namespace (root rotation)", authzv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "secrets", Name: fsmnames.CABundleSecretName}, true},
			{"update a serving-cert Secret in the fsm namespace", authzv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "secrets", Name: fsmnames.InjectorCertSecret}, true},
			{"watch pods", authzv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
			{"create pods", authzv1.ResourceAttributes{Namespace: "app", Verb: "create", Resource: "pods"}, false},
			{"get namespaces", authzv1.ResourceAttributes{Verb: "get", Resource: "namespaces", Name: "app"}, true},
			{"watch LimitRanges (the injector's informer)", authzv1.ResourceAttributes{Verb: "watch", Resource: "limitranges"}, true},
			{"list ResourceQuotas (the injector's informer)", authzv1.ResourceAttributes{Verb: "list", Resource: "resourcequotas"}, true},
			{"update a ResourceQuota", authzv1.ResourceAttributes{Namespace: "app", Verb: "update", Resource: "resourcequotas", Name: "q"}, false},
			{"create events", authzv1.ResourceAttributes{Namespace: "app", Verb: "create", Resource: "events"}, true},
			{"update own mutating configuration", authzv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: mwcName}, true},
			{"patch own mutating configuration (the servers update it)", authzv1.ResourceAttributes{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: mwcName}, false},
			{"watch own mutating configuration by name", authzv1.ResourceAttributes{Verb: "watch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: mwcName}, true},
			{"list every mutating configuration", authzv1.ResourceAttributes{Verb: "list", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}, false},
			{"patch another mutating configuration", authzv1.ResourceAttributes{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "istio-sidecar-injector"}, false},
			{"create a mutating configuration", authzv1.ResourceAttributes{Verb: "create", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}, false},
			{"delete own mutating configuration", authzv1.ResourceAttributes{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: mwcName}, false},
			{"update own validating configuration", authzv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: vwcName}, true},
			{"patch own validating configuration (the servers update it)", authzv1.ResourceAttributes{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: vwcName}, false},
			{"update the MeshConfig CRD", authzv1.ResourceAttributes{Verb: "update", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: crdName}, true},
			{"patch the MeshConfig CRD (the converter updates it)", authzv1.ResourceAttributes{Verb: "patch", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: crdName}, false},
			{"update another CRD", authzv1.ResourceAttributes{Verb: "update", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "certificates.cert-manager.io"}, false},
			{"delete the MeshConfig CRD", authzv1.ResourceAttributes{Verb: "delete", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: crdName}, false},
			{"get the MeshConfig", authzv1.ResourceAttributes{Namespace: ns, Verb: "get", Group: fsmnames.ConfigGroup, Resource: fsmnames.MeshConfigResource, Name: fsmnames.MeshConfigName}, true},
			{"update the MeshConfig", authzv1.ResourceAttributes{Namespace: ns, Verb: "update", Group: fsmnames.ConfigGroup, Resource: fsmnames.MeshConfigResource, Name: fsmnames.MeshConfigName}, false},
			{"dry-run create a MeshConfig in the fsm namespace (validator probe)", authzv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: fsmnames.ConfigGroup, Resource: fsmnames.MeshConfigResource}, true},
			{"create a MeshConfig elsewhere", authzv1.ResourceAttributes{Namespace: "app", Verb: "create", Group: fsmnames.ConfigGroup, Resource: fsmnames.MeshConfigResource}, false},
			{"list IngressBackends", authzv1.ResourceAttributes{Verb: "list", Group: "policy.flomesh.io", Resource: "ingressbackends"}, true},
			{"get an IngressBackend (the validator lists from its cache)", authzv1.ResourceAttributes{Namespace: "app", Verb: "get", Group: "policy.flomesh.io", Resource: "ingressbackends", Name: "x"}, false},
			{"list EgressGateways", authzv1.ResourceAttributes{Verb: "list", Group: "policy.flomesh.io", Resource: "egressgateways"}, true},
			{"cert-manager requests with tresor", authzv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "cert-manager.io", Resource: "certificaterequests"}, false},
			{"scale its own Deployment", authzv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "apps", Resource: "deployments", Name: "fsm-webhooks"}, false},
			{"bind cluster roles", authzv1.ResourceAttributes{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				attrs := tc.attrs
				sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User:               saUser,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
					ResourceAttributes: &attrs,
				}}
				got, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got.Status.Allowed != tc.allowed {
					t.Errorf("allowed = %v, want %v (%s)", got.Status.Allowed, tc.allowed, got.Status.Reason)
				}
			})
		}
	})

	t.Run("upgrade keeps the servers' caBundle and the live MeshConfig", func(t *testing.T) {
		// What the injector does once it serves: change only the caBundle,
		// under its own field manager (it updates the object; a non-apply
		// patch records the same Update entry in managedFields).
		bundle := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
		patch := []byte(`{"webhooks":[{"name":"` + injector.WebhookName + `","clientConfig":{"caBundle":"` + b64(bundle) + `"}}]}`)
		if err := c.Patch(ctx, &admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
			client.RawPatch(types.StrategicMergePatchType, patch), client.FieldOwner("fsm-webhooks")); err != nil {
			t.Fatal(err)
		}
		var before v1alpha3.MeshConfig
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fsmnames.MeshConfigName}, &before); err != nil {
			t.Fatal(err)
		}
		vals, err := charttest.Values("fsm: {webhooks: {replicaCount: 3}, webhook: {timeoutSeconds: 10}}")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := helm.Upgrade(ctx, vals); err != nil {
			t.Fatal(err)
		}
		var m admv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &m); err != nil {
			t.Fatal(err)
		}
		if got := m.Webhooks[0].TimeoutSeconds; got == nil || *got != 10 {
			t.Errorf("upgrade did not apply timeoutSeconds: %v", got)
		}
		if string(m.Webhooks[0].ClientConfig.CABundle) != string(bundle) {
			t.Errorf("helm upgrade changed the servers' caBundle to %q", m.Webhooks[0].ClientConfig.CABundle)
		}
		var d appsv1.Deployment
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}, &d); err != nil {
			t.Fatal(err)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("replicas %v after upgrade", d.Spec.Replicas)
		}
		var after v1alpha3.MeshConfig
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fsmnames.MeshConfigName}, &after); err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion {
			t.Error("helm upgrade rewrote the live MeshConfig")
		}
	})

	t.Run("the servers' Secret writes are confined to what they write", func(t *testing.T) {
		secretWritesConfined(t, env)
	})

	t.Run("the servers may change only the caBundle and conversion of their registrations", func(t *testing.T) {
		registrationWritesConfined(t, env)
	})

	t.Run("the servers adopt the chart's objects with the chart's RBAC and drain on live caches", func(t *testing.T) {
		serverAdoptsChart(t, env)
	})

	t.Run("the pre-delete hook unhooks the mesh and is idempotent", func(t *testing.T) {
		preDeleteHook(t, env)
	})

	t.Run("uninstall removes the release's objects", func(t *testing.T) {
		// No kubelet runs the pre-delete Job here; its behaviour belongs to
		// `fsm-webhooks uninstall-hook`.
		if err := helm.Uninstall(false); err != nil {
			t.Fatal(err)
		}
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks", Namespace: ns}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.InjectorService, Namespace: ns}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fsm-webhooks-fsm"}},
			&admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}},
			&admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}},
		} {
			err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
			if !apierrors.IsNotFound(err) && o.GetDeletionTimestamp() == nil {
				t.Errorf("%T %s still present after uninstall (err %v)", o, o.GetName(), err)
			}
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
