package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/certs/status"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestCertsStatusReadsDeployment: on a real apiserver, `certs status` with
// only --kubeconfig finds the servers' Deployment, takes the mesh, the fsm
// namespace and the CA Secret's name from its args, reports where they came
// from, and shows the CA's rotation phase and root expiry; a flag given on
// the command line wins.
func TestCertsStatusReadsDeployment(t *testing.T) {
	const ns = "blue-system"
	env, kubeconfig := adminEnv(t, ns)
	ctx := context.Background()
	st, err := (&tresor.Store{Client: env.Clientset, Namespace: ns, Name: "blue-ca"}).Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serversDeployment(t, env, ns, "blue", "--fsm-namespace="+ns, "--mesh-name=blue", "--ca-bundle-secret-name=blue-ca", "--certificate-manager=tresor")

	run := func(args ...string) (*status.Report, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"certs", "status", "--kubeconfig=" + kubeconfig, "-o", "json"}, args...))
		runErr := root.Execute()
		r := &status.Report{}
		if err := json.Unmarshal(out.Bytes(), r); err != nil {
			t.Fatalf("certs status %v: %v; output %q", args, runErr, out.String())
		}
		return r, runErr
	}

	// No serving certs exist: the report says so (exit 1), but it is made
	// against the Deployment's mesh.
	r, err := run()
	if err == nil || r.Healthy {
		t.Fatalf("healthy without serving certs: %v", err)
	}
	c := r.Configuration
	if c == nil || c.Source != "Deployment "+ns+"/fsm-webhooks" || c.MeshName != "blue" || c.FSMNamespace != ns || c.Provider != "tresor" {
		t.Fatalf("configuration %+v; want the Deployment's", c)
	}
	if len(r.CAs) != 1 || r.CAs[0].Serial != st.Authority.Cert.SerialNumber.Text(16) {
		t.Fatalf("CAs %+v; want the root in %s/blue-ca", r.CAs, ns)
	}
	rr := r.RootRotation
	if rr == nil || rr.Phase != status.PhaseNone || rr.Root == nil || !rr.Root.NotAfter.Equal(st.Authority.Cert.NotAfter.UTC()) {
		t.Fatalf("root rotation %+v; want phase None and the root's expiry %s", rr, st.Authority.Cert.NotAfter)
	}
	if want := "validating-webhook-cert-secret"; r.Webhooks[1].Secret != ns+"/"+want {
		t.Fatalf("webhooks %+v; want Secrets in %s", r.Webhooks, ns)
	}

	// The command line wins over the Deployment: another CA Secret name
	// that does not exist is an error naming it.
	root := newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"certs", "status", "--kubeconfig=" + kubeconfig, "--ca-bundle-secret-name=other"})
	if err := root.Execute(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(ns+"/other")) {
		t.Fatalf("error %v; want one naming %s/other", err, ns)
	}
}

// serversDeployment creates the servers' Deployment of mesh in ns as the
// chart labels it, running serve with args.
func serversDeployment(t *testing.T, env *testenv.Env, ns, mesh string, args ...string) {
	t.Helper()
	labels := map[string]string{"app": "fsm-webhooks", "app.kubernetes.io/component": "webhooks", "app.kubernetes.io/instance": mesh}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fsm-webhooks", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "fsm-webhooks", Image: "flomesh/fsm-webhooks:0.1.0", Args: append([]string{"serve"}, args...),
			}}}},
		},
	}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// adminEnv starts an apiserver with namespace ns and returns it with the
// path of an admin kubeconfig for it, as a command line would be given.
func adminEnv(t *testing.T, ns string) (*testenv.Env, string) {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	kubeconfig := userKubeconfig(t, env, envtest.User{Name: "admin", Groups: []string{"system:masters"}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return env, kubeconfig
}

// userKubeconfig is the path of a kubeconfig for user on env's apiserver,
// as a command line would be given.
func userKubeconfig(t *testing.T, env *testenv.Env, user envtest.User) string {
	t.Helper()
	u, err := env.AddUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// TestCertsStatusVaultSettingsFromDeployment: `certs status
// --certificate-manager=vault` without --vault-host takes the Vault settings
// from the servers' Deployment rather than refusing the flags before reading
// it; with no Deployment the missing flag is named with where it was looked
// for.
func TestCertsStatusVaultSettingsFromDeployment(t *testing.T) {
	const ns = "vault-system"
	env, kubeconfig := adminEnv(t, ns)
	status := func() error {
		root := newRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetArgs([]string{"certs", "status", "--kubeconfig=" + kubeconfig, "--fsm-namespace=" + ns, "--certificate-manager=vault", "-o", "json"})
		return root.Execute()
	}

	err := status()
	var ue *usageError
	if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--vault-host") || !strings.Contains(err.Error(), "no fsm-webhooks Deployment found") {
		t.Fatalf("without a Deployment: %v; want a usage error naming --vault-host and the missing Deployment", err)
	}

	// Nothing listens on port 1: the command gets as far as calling the
	// Deployment's Vault.
	serversDeployment(t, env, ns, "fsm", "--fsm-namespace="+ns, "--certificate-manager=vault",
		"--vault-host=127.0.0.1", "--vault-port=1", "--vault-protocol=http", "--vault-role=mesh", "--vault-token=root")
	err = status()
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("with the Deployment: %v; want the Deployment's Vault (127.0.0.1:1) called", err)
	}
}

// TestCertsStatusChecksTheWebhooksServed: servers running `serve
// --webhooks=injector,validator` register no converter and issue it no
// serving certificate, so `certs status` reading their Deployment checks
// those two only. It checked all three, and reported the converter they
// never serve (no Secret, a CRD without their stanza) as needing attention:
// exit status 1 on every run, a monitoring check that could never pass.
func TestCertsStatusChecksTheWebhooksServed(t *testing.T) {
	const ns = "fsm-system"
	env, kubeconfig := adminEnv(t, ns)
	if _, err := (&tresor.Store{Client: env.Clientset, Namespace: ns, Name: "fsm-ca-bundle"}).Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	serversDeployment(t, env, ns, "fsm", "--fsm-namespace="+ns, "--webhooks=injector,validator")
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"certs", "status", "--kubeconfig=" + kubeconfig, "-o", "json"})
	runErr := root.Execute()
	r := &status.Report{}
	if err := json.Unmarshal(out.Bytes(), r); err != nil {
		t.Fatalf("certs status: %v; output %q", runErr, out.String())
	}
	var names []string
	for _, w := range r.Webhooks {
		names = append(names, w.Name)
	}
	if strings.Join(names, ",") != "injector,validator" {
		t.Errorf("webhooks checked %v; want the Deployment's injector,validator", names)
	}
	for _, p := range r.Problems {
		if strings.HasPrefix(p, "converter:") {
			t.Errorf("problem %q reported for a webhook the servers do not serve", p)
		}
	}

	// A --webhooks the servers could not run with is named, with where it
	// was read.
	d, err := env.Clientset.AppsV1().Deployments(ns).Get(context.Background(), "fsm-webhooks", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Args = []string{"serve", "--fsm-namespace=" + ns, "--webhooks=injector,mutator"}
	if _, err := env.Clientset.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	root = newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"certs", "status", "--kubeconfig=" + kubeconfig})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `"mutator"`) || !strings.Contains(err.Error(), "Deployment "+ns+"/fsm-webhooks") {
		t.Errorf("with --webhooks=injector,mutator: %v; want an error naming mutator and the Deployment", err)
	}
}

// TestCertsStatusForbiddenClusterWideSaysNarrow: an operator whose rights
// on Deployments are in the mesh's namespace only (a RoleBinding there)
// ran `certs status` as documented, and it stopped at the cluster-wide
// search for the servers' Deployment with the apiserver's Forbidden alone;
// the error now says that --fsm-namespace searches one namespace, and with
// it the command gets past the Deployment.
func TestCertsStatusForbiddenClusterWideSaysNarrow(t *testing.T) {
	const ns = "fsm-system"
	env, _ := adminEnv(t, ns)
	ctx := context.Background()
	serversDeployment(t, env, ns, "fsm", "--fsm-namespace="+ns)
	if _, err := env.Clientset.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mesh-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mesh-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "mesh-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "oncall"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := userKubeconfig(t, env, envtest.User{Name: "oncall"})
	run := func(args ...string) error {
		root := newRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetArgs(append([]string{"certs", "status", "--kubeconfig=" + kubeconfig}, args...))
		return root.Execute()
	}
	err := run()
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "--fsm-namespace") {
		t.Errorf("without --fsm-namespace: %v; want the Forbidden and --fsm-namespace named", err)
	}
	// Past the Deployment: the next read (the CA Secret) is the one refused.
	if err := run("--fsm-namespace=" + ns); err == nil || strings.Contains(err.Error(), "Deployments") || !strings.Contains(err.Error(), "secrets") {
		t.Errorf("with --fsm-namespace=%s: %v; want the Deployment read and the CA Secret refused", ns, err)
	}
}
