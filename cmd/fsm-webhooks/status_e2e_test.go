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
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return env, kubeconfig
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
