package install_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// fsmReference is FSM v1.5.1's recorded install (read-only corpus).
func fsmReference(name string) string {
	return filepath.Join(testenv.RepoRoot(), "..", "shared", "fsm-reference", name)
}

// fsmHelmOwned marks o as Helm's install of FSM's release "fsm" marks it:
// `helm template` (the reference file) prints objects without this metadata.
func fsmHelmOwned(o client.Object) {
	l := o.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l["app.kubernetes.io/managed-by"] = "Helm"
	o.SetLabels(l)
	o.SetAnnotations(map[string]string{"meta.helm.sh/release-name": "fsm", "meta.helm.sh/release-namespace": ns})
}

// installFSM creates what FSM v1.5.1 leaves in a cluster: the objects its
// chart installs that share a name with ours or that its users depend on
// (Services, Deployments, the chart's empty webhook configurations), the
// webhook configurations its injector and controller create at run time
// (not Helm-owned), the CA Secret in FSM's key layout, its MeshConfig CRD and
// a MeshConfig an operator has changed.
func installFSM(ctx context.Context, t *testing.T, c client.Client) (caCrt []byte) {
	t.Helper()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	wanted := map[string]bool{
		"Service/fsm-bootstrap": true, "Service/fsm-injector": true, "Service/fsm-controller": true, "Service/fsm-validator": true,
		"Deployment/fsm-bootstrap": true, "Deployment/fsm-controller": true, "Deployment/fsm-injector": true,
		"MutatingWebhookConfiguration/flomesh-mutating-webhook-configuration":     true,
		"ValidatingWebhookConfiguration/flomesh-validating-webhook-configuration": true,
	}
	for _, u := range decodeFile(t, fsmReference("fsm-install-v1.5.1.yaml")) {
		if !wanted[u.GetKind()+"/"+u.GetName()] {
			continue
		}
		fsmHelmOwned(u)
		if err := c.Create(ctx, u); err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		delete(wanted, u.GetKind()+"/"+u.GetName())
	}
	if len(wanted) != 0 {
		t.Fatalf("not in the FSM install reference: %v", wanted)
	}
	for _, u := range decodeFile(t, fsmReference("crds/config.flomesh.io_meshconfigs.yaml")) {
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}

	caCrt = selfSignedPEM(t)
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-ca-bundle", Namespace: ns},
		Data:       map[string][]byte{"ca.crt": caCrt, "private.key": []byte("FSM's key"), "expiration": []byte("2036-01-01 00:00:00 +0000 UTC")},
	}); err != nil {
		t.Fatal(err)
	}

	// FSM's injector and controller create these at run time, so Helm's
	// release "fsm" does not own them.
	svc := func(name string, port int32, path string) admv1.WebhookClientConfig {
		return admv1.WebhookClientConfig{Service: &admv1.ServiceReference{Namespace: ns, Name: name, Port: ptr.To(port), Path: ptr.To(path)}, CABundle: caCrt}
	}
	if err := c.Create(ctx, &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwcName, Labels: map[string]string{"app": "fsm-injector"}},
		Webhooks: []admv1.MutatingWebhook{{
			Name: "fsm-inject.k8s.io", ClientConfig: svc("fsm-injector", 9090, "/mutate-pod-creation"),
			Rules:                   []admv1.RuleWithOperations{{Operations: []admv1.OperationType{admv1.Create}, Rule: admv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"flomesh.io/monitored-by": mesh}},
			SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &admv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: vwcName, Labels: map[string]string{"app": "fsm-controller"}},
		Webhooks: []admv1.ValidatingWebhook{{
			Name: "fsm-validator.k8s.io", ClientConfig: svc("fsm-validator", 9093, "/validate"),
			Rules:                   []admv1.RuleWithOperations{{Operations: []admv1.OperationType{admv1.Create, admv1.Update}, Rule: admv1.Rule{APIGroups: []string{"policy.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"*"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"flomesh.io/monitored-by": mesh}},
			SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}); err != nil {
		t.Fatal(err)
	}

	// FSM's preset, with a setting an operator changed.
	docs := decodeFile(t, fsmReference("meshconfig-preset-v1alpha3.yaml"))
	mc := docs[0]
	if err := unstructured.SetNestedField(mc.Object, "debug", "spec", "sidecar", "logLevel"); err != nil {
		t.Fatal(err)
	}
	createEventually(ctx, t, c, mc)
	return caCrt
}

// createEventually retries while the CRD just created is not served yet.
func createEventually(ctx context.Context, t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	var err error
	for range 50 {
		if err = c.Create(ctx, o); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", o.GetName(), err)
}

func decodeFile(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := d.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) != 0 {
			out = append(out, u)
		}
	}
}

// helmInstall installs the chart as `helm install [--take-ownership]` does.
func helmInstall(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &path
	namespace := ns
	flags.Namespace = &namespace
	cacheDir := filepath.Join(dir, "cache")
	flags.CacheDir = &cacheDir
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	ch, err := charttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(cfg)
	in.ReleaseName = charttest.ReleaseName
	in.Namespace = ns
	in.WaitStrategy = kube.HookOnlyStrategy
	in.Timeout = 2 * time.Minute
	in.TakeOwnership = takeOwnership
	// FSM's bootstrap created the MeshConfig CRD, so Helm 4's server-side
	// apply of crds/ conflicts with its field manager: the takeover
	// replaces FSM's CRD (same group, kinds and versions) with ours.
	in.ForceConflicts = takeOwnership
	_, err = in.RunWithContext(ctx, ch, values)
	return err
}

// TestTakeoverFromFSM installs the chart next to FSM v1.5.1's objects as
// docs/migrate-from-fsm.md says: a plain install stops on Helm ownership,
// --take-ownership adopts FSM's Services and run-time webhook
// configurations, and FSM's CA and MeshConfig stay byte for byte.
// Not yet measured here: pod creates during the switch (see the doc).
func TestTakeoverFromFSM(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := env.Client
	caCrt := installFSM(ctx, t, c)

	mcKey := types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}
	before := &unstructured.Unstructured{}
	before.SetAPIVersion("config.flomesh.io/v1alpha3")
	before.SetKind("MeshConfig")
	if err := c.Get(ctx, mcKey, before); err != nil {
		t.Fatal(err)
	}
	values := map[string]any{"fsm": map[string]any{"meshConfig": map[string]any{"create": false}}}

	t.Run("plain install stops on FSM's ownership", func(t *testing.T) {
		err := helmInstall(ctx, t, env.KubeConfig, values, false)
		if err == nil || !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("install next to FSM without --take-ownership: %v", err)
		}
	})

	t.Run("take-ownership adopts and keeps FSM's data", func(t *testing.T) {
		// The refused install stopped at crds/, before recording a release.
		if err := helmInstall(ctx, t, env.KubeConfig, values, true); err != nil {
			t.Fatal(err)
		}
		var ca corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-ca-bundle"}, &ca); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca.Data["ca.crt"], caCrt) || string(ca.Data["private.key"]) != "FSM's key" {
			t.Errorf("fsm-ca-bundle changed: %v", ca.Data)
		}
		after := before.DeepCopy()
		if err := c.Get(ctx, mcKey, after); err != nil {
			t.Fatal(err)
		}
		if after.GetResourceVersion() != before.GetResourceVersion() {
			t.Errorf("fsm-mesh-config written by the install: resourceVersion %s -> %s", before.GetResourceVersion(), after.GetResourceVersion())
		}
		for _, name := range []string{"fsm-injector", "fsm-validator", "fsm-bootstrap"} {
			var s corev1.Service
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
				t.Fatal(err)
			}
			if got := s.Annotations["meta.helm.sh/release-name"]; got != charttest.ReleaseName {
				t.Errorf("Service %s release %q, want %q", name, got, charttest.ReleaseName)
			}
			t.Logf("Service %s selector after takeover: %v", name, s.Spec.Selector)
		}
		var m admv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &m); err != nil {
			t.Fatal(err)
		}
		if m.Annotations["meta.helm.sh/release-name"] != charttest.ReleaseName {
			t.Errorf("%s not adopted: %v", mwcName, m.Annotations)
		}
		// Helm 4 adopts with server-side apply as the sole manager
		// (--force-conflicts): the caBundle FSM's injector wrote is removed,
		// and pod creates in meshed namespaces fail until our injector
		// writes its own. docs/migrate-from-fsm.md states this window; this
		// pins the fact so a fix (carrying the bundle over) shows up here.
		if len(m.Webhooks) != 1 {
			t.Fatalf("%s has %d webhooks after adoption, want 1", mwcName, len(m.Webhooks))
		}
		if got := m.Webhooks[0].ClientConfig.CABundle; len(got) != 0 {
			t.Errorf("%s after adoption: want FSM's caBundle removed by the apply, got %q", mwcName, got)
		}
		// FSM's controller Service and Deployments stay FSM's.
		var ctl corev1.Service
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-controller"}, &ctl); err != nil {
			t.Fatal(err)
		}
		if ctl.Annotations["meta.helm.sh/release-name"] != "fsm" {
			t.Errorf("fsm-controller Service changed owner: %v", ctl.Annotations)
		}
	})
}
