package install_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/uninstall"
)

// TestUserDataSurvivesTheRelease: an fsm-mesh-config and an fsm-ca-bundle
// that exist before the install (FSM's, with FSM's key layout and
// non-default settings) are the same objects, byte for byte, after
// install, upgrade, rollback and uninstall (the pre-delete hook's command
// run with the Job's arguments as rendered, then Helm's uninstall).
func TestUserDataSurvivesTheRelease(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	c := env.Client

	// What FSM left: its CRD, its MeshConfig, its CA.
	crdYAML, err := os.ReadFile(filepath.Join(charttest.Dir(), "crds", fsmnames.ConfigGroup+"_"+fsmnames.MeshConfigResource+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(crdYAML, crd); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	// FSM's stored preset with settings of the user's.
	preset, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "..", "shared", "fsm-reference", "meshconfig-preset-v1alpha3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := &v1alpha3.MeshConfig{}
	if err := yaml.Unmarshal(preset, mc); err != nil {
		t.Fatal(err)
	}
	mc.Name, mc.Namespace, mc.ResourceVersion = fsmnames.MeshConfigName, ns, ""
	mc.Spec.Sidecar.LogLevel = "debug"
	mc.Spec.Traffic.EnableEgress = false
	mc.Spec.ClusterSet.UID = "8c8ef0a4-4a65-4a34-9a7e-2f3c2f0f1b55"
	mc.Spec.Certificate.ServiceCertValidityDuration = "7h"
	// The CRD's kind is served a moment after it is created, seconds after
	// on a loaded apiserver.
	createEventually(ctx, t, c, mc)
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.CABundleSecretName, Namespace: ns},
		Data: map[string][]byte{"ca.crt": []byte("FSM's root"), "private.key": []byte("FSM's key"), "expiration": []byte("2036-01-01 00:00:00.000000000 +0000 UTC")}}
	if err := c.Create(ctx, ca); err != nil {
		t.Fatal(err)
	}
	want := snapshot(ctx, t, c)

	helm := newHelm(t, env)
	rel, err := helm.Install(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rel.Hooks {
		if h.Kind == "MeshConfig" {
			t.Errorf("install rendered the MeshConfig hook %s over an existing fsm-mesh-config", h.Path)
		}
	}
	unchanged(ctx, t, c, "install", want)

	vals, err := charttest.Values("fsm: {webhooks: {replicaCount: 3}, sidecar: {sidecarLogLevel: warn}}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.Upgrade(ctx, vals); err != nil {
		t.Fatal(err)
	}
	unchanged(ctx, t, c, "upgrade", want)

	if err := helm.Rollback(1); err != nil {
		t.Fatal(err)
	}
	unchanged(ctx, t, c, "rollback", want)

	// The pre-delete Job as rendered for the release's values (no kubelet
	// runs it here): its command with the Job's arguments.
	r, err := charttest.Render(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := r.Find("Job", "fsm-webhooks-uninstall")
	if job == nil {
		t.Fatal("no pre-delete Job fsm-webhooks-uninstall rendered")
	}
	hookArgs := jobArgs(t, job)
	runBinary(ctx, t, env, hookArgs)
	if err := helm.Uninstall(false); err != nil {
		t.Fatal(err)
	}
	unchanged(ctx, t, c, "uninstall", want)
}

// userData is what must survive: the objects as the API returns them.
type userData struct {
	meshConfig v1alpha3.MeshConfig
	caBundle   corev1.Secret
}

func snapshot(ctx context.Context, t *testing.T, c client.Client) userData {
	t.Helper()
	var d userData
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fsmnames.MeshConfigName}, &d.meshConfig); err != nil {
		t.Fatalf("MeshConfig fsm-mesh-config: %v", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fsmnames.CABundleSecretName}, &d.caBundle); err != nil {
		t.Fatalf("Secret fsm-ca-bundle: %v", err)
	}
	return d
}

// unchanged fails unless both objects are the same objects (UID) at the same
// resourceVersion, with the same labels, annotations and content.
func unchanged(ctx context.Context, t *testing.T, c client.Client, step string, want userData) {
	t.Helper()
	got := snapshot(ctx, t, c)
	for _, p := range []struct {
		name      string
		got, want metav1.Object
		gotC      any
		wantC     any
	}{
		{"MeshConfig fsm-mesh-config", &got.meshConfig, &want.meshConfig, got.meshConfig.Spec, want.meshConfig.Spec},
		{"Secret fsm-ca-bundle", &got.caBundle, &want.caBundle, got.caBundle.Data, want.caBundle.Data},
	} {
		if p.got.GetUID() != p.want.GetUID() {
			t.Errorf("after %s: %s was replaced (uid %s, was %s)", step, p.name, p.got.GetUID(), p.want.GetUID())
			continue
		}
		if p.got.GetResourceVersion() != p.want.GetResourceVersion() {
			t.Errorf("after %s: %s was written (resourceVersion %s, was %s)", step, p.name, p.got.GetResourceVersion(), p.want.GetResourceVersion())
		}
		if !reflect.DeepEqual(p.gotC, p.wantC) || !reflect.DeepEqual(p.got.GetLabels(), p.want.GetLabels()) ||
			!reflect.DeepEqual(p.got.GetAnnotations(), p.want.GetAnnotations()) {
			t.Errorf("after %s: %s changed", step, p.name)
		}
	}
	if _, marked := got.meshConfig.Annotations[uninstall.CreatedByAnnotation]; marked {
		t.Errorf("after %s: the user's MeshConfig carries %s", step, uninstall.CreatedByAnnotation)
	}
}

// jobArgs is the first container's args of a rendered Job.
func jobArgs(t *testing.T, job *unstructured.Unstructured) []string {
	t.Helper()
	cs, _, err := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers")
	if err != nil || len(cs) == 0 {
		t.Fatalf("Job %s: no containers (err %v)", job.GetName(), err)
	}
	a, _, err := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	if err != nil {
		t.Fatalf("Job %s: args: %v", job.GetName(), err)
	}
	return a
}

// runBinary builds cmd/fsm-webhooks and runs it with args against env, as
// the Job's container would.
func runBinary(ctx context.Context, t *testing.T, env *testenv.Env, args []string) {
	t.Helper()
	dir := t.TempDir()
	bin := buildServer(ctx, t, dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig="+kubeconfig)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fsm-webhooks %v: %v\n%s", args, err, out)
	}
}
