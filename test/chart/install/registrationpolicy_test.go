package install_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	coordv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// Refusal texts of the registration policy (fsm-webhooks-fsm-registration).
const (
	denyCreateDelete = "never creates or deletes "
	denyOtherObject  = "may only update "
	denyMetadata     = "may not change the labels, annotations, ownerReferences or finalizers"
	denyWebhookField = "may only change the clientConfig.caBundle of the webhooks"
	denyCRDSpec      = "may only change spec.conversion of CustomResourceDefinition"
	denyConversion   = "may only point the conversion webhook of"
	denyLease        = "only creates and updates Lease kube-system/fsm-webhooks-conversion-meshconfigs-config-flomesh-io, not "
)

// registrationWritesConfined: the servers' ServiceAccount (impersonated, with
// the chart's RBAC) may change the caBundle of its own webhook configurations
// and the MeshConfig CRD's conversion stanza, as the servers do, and nothing
// else of them; with RBAC widened by mistake, the policy still refuses
// creating, deleting and touching other configurations and CRDs. Of Leases,
// which RBAC lets it create by any name in kube-system, it may write only
// the conversion-owner Lease.
func registrationWritesConfined(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := env.Clientset
	testCABundle := selfSignedPEM(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser, Groups: saGroups}
	sa := serviceAccountClient(t, env)
	saExt, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	adminExt, err := apiextclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	leases := sa.CoordinationV1().Leases("kube-system")
	conversionLease := webhooks.ConversionLeaseName(crdName)
	createdLease := false
	mwcs := sa.AdmissionregistrationV1().MutatingWebhookConfigurations()
	// Each write reads the object as the ServiceAccount, changes it and
	// writes it back, as the servers do.
	mutating := func(change func(*admv1.MutatingWebhookConfiguration)) func() error {
		return func() error {
			m, err := mwcs.Get(ctx, mwcName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(m)
			_, err = mwcs.Update(ctx, m, metav1.UpdateOptions{})
			return err
		}
	}
	validating := func(change func(*admv1.ValidatingWebhookConfiguration)) func() error {
		return func() error {
			v, err := sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, vwcName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(v)
			_, err = sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
			return err
		}
	}
	crd := func(change func(*apiextv1.CustomResourceDefinition)) func() error {
		return func() error {
			c, err := saExt.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crdName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(c)
			_, err = saExt.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, c, metav1.UpdateOptions{})
			return err
		}
	}
	caBundle := func(b []byte) func(*admv1.MutatingWebhookConfiguration) {
		return func(m *admv1.MutatingWebhookConfiguration) {
			for i := range m.Webhooks {
				m.Webhooks[i].ClientConfig.CABundle = b
			}
		}
	}
	// What webhooks.SetConversion writes in Service mode.
	conversion := func(svc *apiextv1.ServiceReference, url *string) func(*apiextv1.CustomResourceDefinition) {
		return func(c *apiextv1.CustomResourceDefinition) {
			c.Spec.Conversion = &apiextv1.CustomResourceConversion{
				Strategy: apiextv1.WebhookConverter,
				Webhook: &apiextv1.WebhookConversion{
					ConversionReviewVersions: []string{"v1"},
					ClientConfig:             &apiextv1.WebhookClientConfig{Service: svc, URL: url, CABundle: testCABundle},
				},
			}
		}
	}
	converterService := func(namespace, name string, port int32) *apiextv1.ServiceReference {
		return &apiextv1.ServiceReference{Namespace: namespace, Name: name, Path: ptr.To(fsmnames.ConverterPath), Port: ptr.To(port)}
	}

	awaitPolicy(ctx, t, mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].FailurePolicy = ptr.To(admv1.Ignore) }),
		func() {
			_ = mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].FailurePolicy = ptr.To(admv1.Fail) })()
		}, denyWebhookField)

	tests := []policyWrite{
		// Allowed: what the servers write.
		{"replace the injector configuration's caBundle", mutating(caBundle(testCABundle)), ""},
		{"replace the caBundle of every validating webhook", validating(func(v *admv1.ValidatingWebhookConfiguration) {
			for i := range v.Webhooks {
				v.Webhooks[i].ClientConfig.CABundle = testCABundle
			}
		}), ""},
		{"point the CRD's conversion at the converter Service", crd(conversion(converterService(ns, fsmnames.ConverterService, 9443), nil)), ""},
		{"replace the conversion caBundle, keeping its target", crd(func(c *apiextv1.CustomResourceDefinition) {
			if c.Spec.Conversion != nil && c.Spec.Conversion.Webhook != nil && c.Spec.Conversion.Webhook.ClientConfig != nil {
				c.Spec.Conversion.Webhook.ClientConfig.CABundle = selfSignedPEM(t)
			}
		}), ""},

		// Refused: any other change to the chart's objects.
		{"set the injector's failurePolicy to Ignore", mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].FailurePolicy = ptr.To(admv1.Ignore) }), denyWebhookField},
		{"widen the injector's rules", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].Rules[0].Operations = append(m.Webhooks[0].Rules[0].Operations, admv1.Update)
		}), denyWebhookField},
		{"point the injector at another Service", mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].ClientConfig.Service.Name = "evil" }), denyWebhookField},
		{"point the injector at a URL", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].ClientConfig.Service, m.Webhooks[0].ClientConfig.URL = nil, ptr.To("https://evil.example:443/mutate")
		}), denyWebhookField},
		{"drop the injector's namespaceSelector", mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{} }), denyWebhookField},
		{"add an objectSelector", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}
		}), denyWebhookField},
		{"set reinvocationPolicy IfNeeded", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].ReinvocationPolicy = ptr.To(admv1.IfNeededReinvocationPolicy)
		}), denyWebhookField},
		{"add a matchCondition", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].MatchConditions = []admv1.MatchCondition{{Name: "never", Expression: "false"}}
		}), denyWebhookField},
		{"add a webhook", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			w := *m.Webhooks[0].DeepCopy()
			w.Name = "evil.k8s.io"
			m.Webhooks = append(m.Webhooks, w)
		}), denyWebhookField},
		{"change the injector's matchPolicy", mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Webhooks[0].MatchPolicy = ptr.To(admv1.Equivalent) }), denyWebhookField},
		{"change the injector's admissionReviewVersions", mutating(func(m *admv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].AdmissionReviewVersions = []string{"v1", "v1beta1"}
		}), denyWebhookField},
		{"label the injector configuration", mutating(func(m *admv1.MutatingWebhookConfiguration) { m.Labels["evil"] = "true" }), denyMetadata},
		{"remove a validating webhook", validating(func(v *admv1.ValidatingWebhookConfiguration) { v.Webhooks = v.Webhooks[:1] }), denyWebhookField},
		{"reorder the validating webhooks", validating(func(v *admv1.ValidatingWebhookConfiguration) {
			v.Webhooks[0], v.Webhooks[1] = v.Webhooks[1], v.Webhooks[0]
		}), denyWebhookField},
		{"shorten the validator's timeout", validating(func(v *admv1.ValidatingWebhookConfiguration) { v.Webhooks[1].TimeoutSeconds = ptr.To[int32](1) }), denyWebhookField},
		{"change the validator's sideEffects", validating(func(v *admv1.ValidatingWebhookConfiguration) {
			v.Webhooks[0].SideEffects = ptr.To(admv1.SideEffectClassNone)
		}), denyWebhookField},
		{"stop serving a MeshConfig version", crd(func(c *apiextv1.CustomResourceDefinition) { c.Spec.Versions[0].Served = false }), denyCRDSpec},
		{"annotate the CRD", crd(func(c *apiextv1.CustomResourceDefinition) { c.Annotations = map[string]string{"evil": "true"} }), denyMetadata},
		{"point the conversion at another Service", crd(conversion(converterService(ns, "evil", 9443), nil)), denyConversion},
		{"point the conversion at the converter name in another namespace", crd(conversion(converterService("default", fsmnames.ConverterService, 9443), nil)), denyConversion},
		{"point the conversion at a URL", crd(conversion(nil, ptr.To("https://evil.example/convert"))), denyConversion},
		{"set the conversion strategy to None (unconverted reads)", crd(func(c *apiextv1.CustomResourceDefinition) {
			c.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
		}), denyConversion},
		// RBAC refuses these first; the policy is the second line.
		{"create a mutating configuration", func() error {
			_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, extraMutating("fsm-extra"), metav1.CreateOptions{})
			return err
		}, "cannot create resource"},
		{"delete its own validating configuration", func() error {
			return sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, vwcName, metav1.DeleteOptions{})
		}, "cannot delete resource"},

		// Leases: RBAC grants create in kube-system by no name. Another
		// Lease there is a leader-election lock (a controller's, the
		// cluster-autoscaler's) that a stolen token would hold for a
		// stranger before its controller starts.
		{"create another Lease in kube-system (a controller's leader-election lock)", func() error {
			_, err := leases.Create(ctx, &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "vap-cluster-autoscaler", Namespace: "kube-system"},
				Spec: coordv1.LeaseSpec{HolderIdentity: ptr.To("stranger"), LeaseDurationSeconds: ptr.To[int32](1 << 30)}}, metav1.CreateOptions{})
			return err
		}, denyLease + "CREATE kube-system/vap-cluster-autoscaler"},
		// Allowed: the converters' conversion-owner Lease, created where
		// missing and renewed (client-go's leader election updates it).
		{"create or update the conversion-owner Lease", func() error {
			l, err := leases.Get(ctx, conversionLease, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				createdLease = true
				l, err = leases.Create(ctx, &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: conversionLease, Namespace: "kube-system"}}, metav1.CreateOptions{})
			}
			if err != nil {
				return err
			}
			l.Spec.LeaseDurationSeconds = ptr.To[int32](15)
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}, ""},
	}
	checkWrites(t, tests)
	if createdLease {
		// Left for the servers of the later steps to create.
		_ = admin.CoordinationV1().Leases("kube-system").Delete(ctx, conversionLease, metav1.DeleteOptions{})
	}
	if _, err := admin.CoordinationV1().Leases("kube-system").Get(ctx, "vap-cluster-autoscaler", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ServiceAccount created Lease kube-system/vap-cluster-autoscaler (err %v)", err)
		_ = admin.CoordinationV1().Leases("kube-system").Delete(ctx, "vap-cluster-autoscaler", metav1.DeleteOptions{})
	}

	t.Run("with RBAC widened by mistake", func(t *testing.T) {
		widened := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "vap-widened"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
					Verbs: []string{"get", "create", "update", "delete"}},
				{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "create", "update", "delete"}},
			},
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "vap-widened"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: widened.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "fsm-webhooks", Namespace: ns}},
		}
		if _, err := admin.RbacV1().ClusterRoles().Create(ctx, widened, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{})
			_ = admin.RbacV1().ClusterRoles().Delete(ctx, widened.Name, metav1.DeleteOptions{})
		}()
		// Someone else's objects, which the ServiceAccount must not touch.
		if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, extraMutating("other-injector"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		other := &apiextv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.com"},
			Spec: apiextv1.CustomResourceDefinitionSpec{
				Group: "example.com", Scope: apiextv1.NamespaceScoped,
				Names: apiextv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
				Versions: []apiextv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
					Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
			},
		}
		if _, err := adminExt.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// RBAC changes apply at once; wait until the widened grant is seen.
		awaitForbidden := func(write func() error, want string) error {
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if err = write(); apierrors.IsForbidden(err) && strings.Contains(err.Error(), want) {
					return nil
				}
			}
			return err
		}
		cases := []struct {
			name  string
			write func() error
			want  string
		}{
			{"create a mutating configuration", func() error {
				_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, extraMutating("fsm-extra"), metav1.CreateOptions{})
				return err
			}, denyCreateDelete + "mutatingwebhookconfigurations"},
			{"delete its own validating configuration", func() error {
				return sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, vwcName, metav1.DeleteOptions{})
			}, denyCreateDelete + "validatingwebhookconfigurations"},
			{"delete the MeshConfig CRD", func() error {
				return saExt.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, crdName, metav1.DeleteOptions{})
			}, denyCreateDelete + "customresourcedefinitions"},
			{"change another mesh's or tool's configuration", func() error {
				m, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "other-injector", metav1.GetOptions{})
				if err != nil {
					return err
				}
				m.Webhooks[0].ClientConfig.CABundle = testCABundle
				_, err = sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
				return err
			}, denyOtherObject + mwcName + " among mutatingwebhookconfigurations, not other-injector"},
			{"set a conversion webhook on another CRD", func() error {
				c, err := saExt.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, other.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				conversion(converterService(ns, fsmnames.ConverterService, 9443), nil)(c)
				_, err = saExt.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, c, metav1.UpdateOptions{})
				return err
			}, denyOtherObject + crdName},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if err := awaitForbidden(tc.write, tc.want); err != nil {
					t.Fatalf("got %v, want Forbidden by the policy (%q)", err, tc.want)
				}
			})
		}
		_ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "other-injector", metav1.DeleteOptions{})
		_ = adminExt.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, other.Name, metav1.DeleteOptions{})
	})

	// Nothing refused took effect.
	m, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Webhooks) != 1 || *m.Webhooks[0].FailurePolicy != admv1.Fail || m.Webhooks[0].ClientConfig.Service == nil ||
		m.Webhooks[0].ClientConfig.Service.Name != fsmnames.InjectorService || m.Labels["evil"] != "" {
		t.Errorf("the injector configuration changed: %+v", m)
	}
	c, err := adminExt.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crdName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Spec.Conversion.Webhook.ClientConfig.Service; s == nil || s.Name != fsmnames.ConverterService || !c.Spec.Versions[0].Served {
		t.Errorf("the CRD changed: conversion %+v", c.Spec.Conversion)
	}
	// Leave the CRD as the chart installed it for the server test.
	c.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
	if _, err := adminExt.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// selfSignedPEM is a CA certificate the apiserver accepts as a caBundle.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registration policy test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// extraMutating is a minimal mutating configuration named name.
func extraMutating(name string) *admv1.MutatingWebhookConfiguration {
	return &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admv1.MutatingWebhook{{
			Name:                    "extra.example.com",
			ClientConfig:            admv1.WebhookClientConfig{URL: ptr.To("https://extra.example.com/mutate")},
			Rules:                   []admv1.RuleWithOperations{{Operations: []admv1.OperationType{admv1.Create}, Rule: admv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"v1"}, Resources: []string{"widgets"}}}},
			SideEffects:             ptr.To(admv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}
