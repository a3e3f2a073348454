package install_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// saGroups are the groups the apiserver gives the servers' ServiceAccount.
var saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}

// serviceAccountClient acts as the servers' ServiceAccount (impersonated), so
// the chart's RBAC and admission policies apply as they would in the pod.
func serviceAccountClient(t *testing.T, env *testenv.Env) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser, Groups: saGroups}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// awaitPolicy retries a write the named policy refuses until it is refused
// with want: the apiserver loads new policies asynchronously.
func awaitPolicy(ctx context.Context, t *testing.T, write func() error, undo func(), want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := write()
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), want) {
			return
		}
		if err == nil {
			undo()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("write as the ServiceAccount: %v, want Forbidden %q", err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Refusal texts of the Secret write policy (fsm-webhooks-fsm-secret-writes),
// literal: they pin the chart's messages as an operator reads them.
const (
	denyNamespaceKind = "never writes Secrets in "
	denyTokenType     = "never writes Secrets of type kubernetes.io/service-account-token"
	denyNotOurs       = "may only change or delete its own bootstrap Secrets outside fsm-system"
	denyShape         = "may only write bootstrap Secrets outside fsm-system: an Opaque sidecar-bootstrap-config-<uuid>"
	denyNotInjected   = "creates bootstrap Secrets only in namespaces it injects"
	denyFSMNamespace  = "in fsm-system it only creates and updates the Secrets fsm-ca-bundle, mutating-webhook-cert-secret, validating-webhook-cert-secret, crd-converter-cert-secret"
)

// bootstrapSecret is the Secret the injector writes for proxy uuid id
// (injector.BootstrapSecret itself), so the allowed cases follow its labels.
func bootstrapSecret(t *testing.T, namespace, meshName, id string) *corev1.Secret {
	t.Helper()
	s, err := injector.BootstrapSecret(namespace, meshName, id,
		&certs.Certificate{CertPEM: []byte("cert"), KeyPEM: []byte("key"), CABundle: []byte("ca")}, injector.BootstrapConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// secretWritesConfined: with the chart's ValidatingAdmissionPolicy the
// servers' ServiceAccount (impersonated, with the chart's RBAC, which lets it
// write every Secret) can still make every write the injector and the
// serving-cert store make, and nothing else: no service-account-token Secret
// (a stolen webhook token would mint any ServiceAccount's token and read it
// back), nothing in kube-system/kube-public, nothing in a namespace the
// injector does not inject, nothing but the injector's labelled Opaque
// bootstrap Secret outside the fsm namespace, and no change to or deletion of
// a Secret that is not one; in the fsm namespace only the CA and serving-cert
// Secrets, created and updated, never deleted (Helm's release records there
// stay closed: helm rollback applies their manifests as the operator).
func secretWritesConfined(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := env.Clientset
	sa := serviceAccountClient(t, env)

	namespaces := map[string]map[string]string{
		"vap-app":     {fsmnames.MonitoredByLabel: mesh},
		"vap-left":    nil, // once monitored, then left the mesh
		"vap-blue":    {fsmnames.MonitoredByLabel: "blue"},
		"vap-ignored": {fsmnames.MonitoredByLabel: mesh, fsmnames.IgnoreLabel: "true"},
		"vap-cp":      {fsmnames.MonitoredByLabel: mesh, fsmnames.ControlPlaneLabel: "true"},
	}
	for name, labels := range namespaces {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Even labelled as monitored, kube-system and kube-public stay closed.
	for _, name := range []string{"kube-system", "kube-public"} {
		patch := []byte(`{"metadata":{"labels":{"` + fsmnames.MonitoredByLabel + `":"` + mesh + `"}}}`)
		if _, err := admin.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// What already exists: an app's Secret, an unlabelled one named like a
	// bootstrap Secret, and bootstrap Secrets the injector wrote earlier.
	existing := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "app-credentials", Namespace: "vap-app"}, StringData: map[string]string{"password": "x"}},
		{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.BootstrapSecretName("impostor"), Namespace: "vap-app"}, StringData: map[string]string{"k": "v"}},
		bootstrapSecret(t, "vap-app", mesh, "earlier"),
		bootstrapSecret(t, "vap-left", mesh, "left"),
	}
	for _, s := range existing {
		if _, err := admin.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	create := func(s *corev1.Secret) func() error {
		return func() error {
			_, err := sa.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
			return err
		}
	}
	patch := func(namespace, name, doc string) func() error {
		return func() error {
			_, err := sa.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, []byte(doc), metav1.PatchOptions{})
			return err
		}
	}
	// The trust controller's write after a root rotation
	// (injector/trustcontroller.go): read the Secret, then a merge patch
	// of injector.TrustPatch guarded by the resourceVersion read. The
	// servers never update a bootstrap Secret (the chart grants no update
	// outside the fsm namespace).
	trustPatch := func(namespace, name string, plan injector.TrustPlan, cert *certs.Certificate) func() error {
		return func() error {
			s, err := sa.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			doc, err := injector.TrustPatch(s, plan, cert)
			if err != nil {
				return err
			}
			_, err = sa.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, doc, metav1.PatchOptions{})
			return err
		}
	}
	del := func(namespace, name string) func() error {
		return func() error { return sa.CoreV1().Secrets(namespace).Delete(ctx, name, metav1.DeleteOptions{}) }
	}
	withType := func(s *corev1.Secret, typ corev1.SecretType) *corev1.Secret {
		s.Type = typ
		switch typ {
		case corev1.SecretTypeServiceAccountToken:
			s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
			s.Data = nil
		case corev1.SecretTypeTLS:
			// What the API requires of the type, so that only the policy refuses it.
			s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = []byte("cert"), []byte("key")
		}
		return s
	}
	relabel := func(s *corev1.Secret, key, value string) *corev1.Secret {
		if value == "" {
			delete(s.Labels, key)
		} else {
			s.Labels[key] = value
		}
		return s
	}

	// Helm's record of the release's first revision, in the release's
	// namespace (the fsm namespace), and another Secret kept there.
	helmRelease := "sh.helm.release.v1." + charttest.ReleaseName + ".v1"
	if _, err := admin.CoreV1().Secrets(ns).Get(ctx, helmRelease, metav1.GetOptions{}); err != nil {
		t.Fatalf("Helm's release record: %v", err)
	}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vap-fsm-other", Namespace: ns},
		StringData: map[string]string{"token": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fsmSecrets := []string{fsmnames.CABundleSecretName, fsmnames.InjectorCertSecret, fsmnames.ValidatorCertSecret, fsmnames.ConverterCertSecret}
	var created []string

	token := withType(bootstrapSecret(t, "vap-app", mesh, "token"), corev1.SecretTypeServiceAccountToken)
	awaitPolicy(ctx, t, create(token), func() { _ = admin.CoreV1().Secrets("vap-app").Delete(ctx, token.Name, metav1.DeleteOptions{}) }, denyTokenType)

	tests := []policyWrite{
		// Refused.
		{"a service-account-token Secret shaped like a bootstrap Secret in an injected namespace", create(token), denyTokenType},
		{"a service-account-token Secret in the fsm namespace", create(withType(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "fsm-token", Namespace: ns}}, corev1.SecretTypeServiceAccountToken)), denyTokenType},
		{"a bootstrap Secret in kube-system", create(bootstrapSecret(t, "kube-system", mesh, "sys")), denyNamespaceKind + "kube-system"},
		{"a bootstrap Secret in kube-public", create(bootstrapSecret(t, "kube-public", mesh, "pub")), denyNamespaceKind + "kube-public"},
		{"a bootstrap Secret in a namespace no mesh monitors", create(bootstrapSecret(t, "vap-left", mesh, "new")), denyNotInjected},
		{"a bootstrap Secret in a namespace of another mesh", create(bootstrapSecret(t, "vap-blue", mesh, "blue")), denyNotInjected},
		{"a bootstrap Secret in a namespace labelled flomesh.io/ignore", create(bootstrapSecret(t, "vap-ignored", mesh, "ign")), denyNotInjected},
		{"a bootstrap Secret in a namespace labelled control-plane", create(bootstrapSecret(t, "vap-cp", mesh, "cp")), denyNotInjected},
		{"an unlabelled Opaque Secret named sidecar-bootstrap-config-*", create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.BootstrapSecretName("bare"), Namespace: "vap-app"}}), denyShape},
		{"a bootstrap Secret of another mesh", create(bootstrapSecret(t, "vap-app", "blue", "othermesh")), denyShape},
		{"a bootstrap Secret whose name is not its uuid label's", create(relabel(bootstrapSecret(t, "vap-app", mesh, "named"), injector.ProxyUUIDLabel, "other")), denyShape},
		{"a kubernetes.io/tls Secret shaped like a bootstrap Secret", create(withType(bootstrapSecret(t, "vap-app", mesh, "tls"), corev1.SecretTypeTLS)), denyShape},
		{"a Secret of any other name in an injected namespace", create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-tls", Namespace: "vap-app"}}), denyShape},
		{"overwrite the app's Secret", patch("vap-app", "app-credentials", `{"stringData":{"password":"stolen"}}`), denyNotOurs},
		{"relabel the app's Secret as a bootstrap Secret", patch("vap-app", "app-credentials",
			`{"metadata":{"labels":{"app.kubernetes.io/name":"flomesh.io","app.kubernetes.io/instance":"fsm","fsm-proxy-uuid":"x"}}}`), denyNotOurs},
		{"delete the app's Secret", del("vap-app", "app-credentials"), denyNotOurs},
		{"delete an unlabelled Secret named like a bootstrap Secret", del("vap-app", fsmnames.BootstrapSecretName("impostor")), denyNotOurs},
		{"strip a bootstrap Secret's labels", patch("vap-app", fsmnames.BootstrapSecretName("earlier"), `{"metadata":{"labels":{"app.kubernetes.io/instance":null}}}`), denyShape},
		{"hand a bootstrap Secret to another mesh", patch("vap-app", fsmnames.BootstrapSecretName("earlier"), `{"metadata":{"labels":{"app.kubernetes.io/instance":"blue"}}}`), denyShape},
		// The fsm namespace holds more than the servers' Secrets: Helm's
		// release records (this chart's, and FSM's own when it is installed
		// there), whose manifests helm rollback applies and helm uninstall
		// deletes with the operator's rights; FSM's other Secrets; the Vault
		// token. A stolen token must not rewrite or delete them.
		{"rewrite the chart's Helm release record (helm rollback applies its manifest as the operator)", func() error {
			s, err := sa.CoreV1().Secrets(ns).Get(ctx, helmRelease, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Labels["status"] = "superseded"
			_, err = sa.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			return err
		}, denyFSMNamespace},
		{"delete the chart's Helm release record", del(ns, helmRelease), denyFSMNamespace},
		{"create a Secret of another name in the fsm namespace", create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vap-other", Namespace: ns}}), denyFSMNamespace},
		{"overwrite another Secret of the fsm namespace", patch(ns, "vap-fsm-other", `{"stringData":{"token":"stolen"}}`), denyFSMNamespace},

		// Allowed: every write the injector and the certificate store make.
		{"create the injector's bootstrap Secret in an injected namespace", create(bootstrapSecret(t, "vap-app", mesh, "now")), ""},
		{"make it owned by its pod (the controller's merge patch)", patch("vap-app", fsmnames.BootstrapSecretName("now"),
			`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":"web","uid":"0b3c7d2a-1111-4a5e-9c11-000000000001"}]}}`), ""},
		{"replace its cacert.pem (root rotation)", patch("vap-app", fsmnames.BootstrapSecretName("now"), `{"data":{"cacert.pem":"bmV3"}}`), ""},
		{"re-issue its certificate (root rotation, the trust controller's patch)", trustPatch("vap-app", fsmnames.BootstrapSecretName("now"),
			injector.TrustPlan{Reissue: true}, &certs.Certificate{CertPEM: []byte("new cert"), KeyPEM: []byte("new key")}), ""},
		{"delete it (orphan sweep)", del("vap-app", fsmnames.BootstrapSecretName("now")), ""},
		{"change a bootstrap Secret in a namespace that left the mesh (its pod still runs a sidecar)", trustPatch("vap-left", fsmnames.BootstrapSecretName("left"),
			injector.TrustPlan{CACert: []byte("new root")}, nil), ""},
		{"delete a bootstrap Secret in a namespace that left the mesh", del("vap-left", fsmnames.BootstrapSecretName("left")), ""},
	}
	// The serving-cert store's and tresor's writes: each of their Secrets
	// created where missing, and updated (they update, never patch).
	for _, name := range fsmSecrets {
		tests = append(tests, policyWrite{"create or update " + name + " in the fsm namespace", func() error {
			s, err := sa.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				created = append(created, name)
				s, err = sa.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, metav1.CreateOptions{})
			}
			if err != nil {
				return err
			}
			s.Labels = map[string]string{"vap-test": "updated"}
			if _, err = sa.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				return err
			}
			// Back as it was, as an administrator: later steps run the servers.
			s, err = admin.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			delete(s.Labels, "vap-test")
			_, err = admin.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			return err
		}, ""})
	}
	checkWrites(t, tests)

	// Nothing refused took effect; others than the ServiceAccount are not
	// concerned.
	got, err := admin.CoreV1().Secrets("vap-app").Get(ctx, "app-credentials", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "x" || len(got.Labels) != 0 {
		t.Errorf("the app's Secret changed: %v %q %v", err, got.Data["password"], got.Labels)
	}
	if _, err := admin.CoreV1().Secrets("vap-app").Get(ctx, token.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the token Secret exists (err %v)", err)
	}
	if _, err := admin.CoreV1().Secrets("vap-app").Patch(ctx, "app-credentials", types.MergePatchType, []byte(`{"stringData":{"password":"y"}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("the policy refused an administrator: %v", err)
	}
	got, err = admin.CoreV1().Secrets(ns).Get(ctx, "vap-fsm-other", metav1.GetOptions{})
	if err != nil || string(got.Data["token"]) != "x" {
		t.Errorf("the fsm namespace's other Secret changed: %v %q", err, got.Data["token"])
	}
	_ = admin.CoreV1().Secrets(ns).Delete(ctx, "vap-fsm-other", metav1.DeleteOptions{})
	for _, name := range created {
		_ = admin.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
}
