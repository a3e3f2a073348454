package install_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
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
// a MeshConfig an operator has changed. With Vault FSM keeps no CA Secret.
func installFSM(ctx context.Context, t *testing.T, c client.Client, root meshCA) {
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

	caCrt := root.bundle()
	if data := root.secretData(); data != nil {
		if err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "fsm-ca-bundle", Namespace: ns},
			Data:       data,
		}); err != nil {
			t.Fatal(err)
		}
	}

	// FSM's injector and controller create these at run time, so Helm's
	// release "fsm" does not own them.
	if err := c.Create(ctx, fsmMutatingConfiguration(caCrt)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &admv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: vwcName, Labels: fsmRuntimeLabels("fsm-controller")},
		Webhooks: []admv1.ValidatingWebhook{{
			Name: "fsm-validator.k8s.io", ClientConfig: fsmClientConfig("fsm-validator", 9093, "/validate", caCrt),
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
}

// fsmRuntimeLabels are the labels FSM's servers set on the configurations
// they create (pkg/injector/webhook.go), which FSM's post-delete cleanup Job
// selects.
func fsmRuntimeLabels(app string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh, "app.kubernetes.io/version": "v1.5.1", "app": app}
}

func fsmClientConfig(service string, port int32, path string, caBundle []byte) admv1.WebhookClientConfig {
	return admv1.WebhookClientConfig{Service: &admv1.ServiceReference{Namespace: ns, Name: service, Port: ptr.To(port), Path: ptr.To(path)}, CABundle: caBundle}
}

// fsmMutatingConfiguration is what FSM v1.5.1's injector registers when it
// starts (createOrUpdateMutatingWebhook): its Service, and the mesh root as
// caBundle.
func fsmMutatingConfiguration(caCrt []byte) *admv1.MutatingWebhookConfiguration {
	return &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwcName, Labels: fsmRuntimeLabels("fsm-injector")},
		Webhooks:   fsmInjectorWebhooks(caCrt),
	}
}

// fsmInjectorWebhooks are the webhooks FSM v1.5.1's injector writes on start
// (pkg/injector/webhook.go, webhook timeout 20 s from its Deployment's
// --webhook-timeout): over an existing configuration it replaces them
// wholesale and keeps the object's metadata.
func fsmInjectorWebhooks(caCrt []byte) []admv1.MutatingWebhook {
	create := []admv1.OperationType{admv1.Create}
	return []admv1.MutatingWebhook{{
		Name: "fsm-inject.k8s.io", ClientConfig: fsmClientConfig("fsm-injector", 9090, "/mutate-pod-creation", caCrt),
		Rules: []admv1.RuleWithOperations{
			{Operations: create, Rule: admv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
			{Operations: create, Rule: admv1.Rule{APIGroups: []string{"machine.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"virtualmachines"}}},
		},
		NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"flomesh.io/monitored-by": mesh},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "flomesh.io/ignore", Operator: metav1.LabelSelectorOpDoesNotExist},
				{Key: "name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{ns}},
				{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
			},
		},
		FailurePolicy:           ptr.To(admv1.Fail),
		MatchPolicy:             ptr.To(admv1.Exact),
		SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
		TimeoutSeconds:          ptr.To[int32](20),
		AdmissionReviewVersions: []string{"v1"},
	}}
}

// createEventually retries while the CRD just created is not served yet:
// the apiserver serves it once Established and the client's REST mapper
// finds it in discovery, both asynchronous, which a loaded apiserver may
// take seconds to do (50 tries 200 ms apart were 10 s).
func createEventually(ctx context.Context, t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if err = c.Create(ctx, o); err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
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

// helmConfig is the Helm action configuration `helm -n fsm-system` uses.
func helmConfig(t *testing.T, kubeconfig []byte) *action.Configuration {
	t.Helper()
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(helmFlags(t, kubeconfig), ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// helmInstall installs the chart as `helm install [--take-ownership]` does.
func helmInstall(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error {
	t.Helper()
	ch, err := charttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(helmConfig(t, kubeconfig))
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

// helmUpgrade is `helm upgrade` with values: with --take-ownership
// --force-conflicts in step 2 of the takeover, plain in the hand-back (the
// objects are the release's).
func helmUpgrade(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error {
	t.Helper()
	ch, err := charttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	up := action.NewUpgrade(helmConfig(t, kubeconfig))
	up.Namespace = ns
	up.WaitStrategy = kube.HookOnlyStrategy
	up.Timeout = 2 * time.Minute
	up.TakeOwnership = takeOwnership
	up.ForceConflicts = takeOwnership
	_, err = up.RunWithContext(ctx, charttest.ReleaseName, ch, values)
	return err
}

// TestTakeoverFromFSM installs the chart next to FSM v1.5.1's objects as
// docs/migrate-from-fsm.md says, with Helm 4 and with Helm 3: a plain install
// stops on Helm ownership, --take-ownership adopts FSM's Services and
// run-time webhook configurations, and FSM's CA and MeshConfig stay byte for
// byte.
func TestTakeoverFromFSM(t *testing.T) {
	for _, h := range []takeoverHelm{helm4, helm3} {
		t.Run(h.name, func(t *testing.T) { takeoverFromFSM(t, h) })
	}
}

func takeoverFromFSM(t *testing.T, h takeoverHelm) {
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := env.Client
	root := newFSMRoot(t)
	installFSM(ctx, t, c, root)
	caCrt := root.CertPEM

	mcKey := types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}
	before := &unstructured.Unstructured{}
	before.SetAPIVersion("config.flomesh.io/v1alpha3")
	before.SetKind("MeshConfig")
	if err := c.Get(ctx, mcKey, before); err != nil {
		t.Fatal(err)
	}
	values := map[string]any{"fsm": map[string]any{"meshConfig": map[string]any{"create": false}}}

	t.Run("plain install stops on FSM's ownership", func(t *testing.T) {
		err := h.install(ctx, t, env.KubeConfig, values, false)
		if err == nil || !strings.Contains(err.Error(), h.ownershipConflict) {
			t.Fatalf("install next to FSM without --take-ownership: %v", err)
		}
	})

	t.Run("take-ownership adopts and keeps FSM's data", func(t *testing.T) {
		// The refused install stopped at crds/, before recording a release.
		if err := h.install(ctx, t, env.KubeConfig, values, true); err != nil {
			t.Fatal(err)
		}
		var ca corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-ca-bundle"}, &ca); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca.Data["ca.crt"], caCrt) || !bytes.Equal(ca.Data["private.key"], root.KeyPEM) {
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
		// The chart renders the live caBundle (lookup), so the adoption's
		// server-side apply keeps the root FSM's injector wrote: pod
		// creates keep being admitted (TestTakeoverWithoutWindow measures it).
		if len(m.Webhooks) != 1 {
			t.Fatalf("%s has %d webhooks after adoption, want 1", mwcName, len(m.Webhooks))
		}
		if got := m.Webhooks[0].ClientConfig.CABundle; !bytes.Equal(got, caCrt) {
			t.Errorf("%s after adoption: caBundle %q, want FSM's root kept", mwcName, got)
		}
		var v admv1.ValidatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: vwcName}, &v); err != nil {
			t.Fatal(err)
		}
		for _, w := range v.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, caCrt) {
				t.Errorf("%s webhook %s after adoption: caBundle %q, want FSM's root", vwcName, w.Name, w.ClientConfig.CABundle)
			}
		}
		// FSM's post-delete cleanup Job (fsm-install-v1.5.1.yaml) deletes
		// the configurations with FSM's labels: the adoption's forced apply
		// gives ours the chart's labels, so that Job no longer selects it
		// (it still deletes fsm-mesh-config and fsm-ca-bundle).
		var labelled admv1.MutatingWebhookConfigurationList
		if err := c.List(ctx, &labelled, client.MatchingLabels(fsmRuntimeLabels("fsm-injector"))); err != nil {
			t.Fatal(err)
		}
		if len(labelled.Items) != 0 {
			t.Errorf("FSM's cleanup selector matches %s after the takeover, want none", labelled.Items[0].Name)
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

// TestFSMCleanupHookDeletesUserData pins the fact docs/migrate-from-fsm.md
// builds on: FSM v1.5.1's chart has a post-delete hook Job that deletes the
// mesh's MeshConfig, its CA Secret and the webhook configurations carrying
// FSM's labels, so FSM's release is uninstalled with --no-hooks.
func TestFSMCleanupHookDeletesUserData(t *testing.T) {
	var job *unstructured.Unstructured
	for _, u := range decodeFile(t, fsmReference("fsm-install-v1.5.1.yaml")) {
		if u.GetKind() == "Job" && u.GetName() == "fsm-cleanup" {
			job = u
		}
	}
	if job == nil {
		t.Fatal("FSM's install reference has no Job fsm-cleanup")
	}
	if got := job.GetAnnotations()["helm.sh/hook"]; got != "post-delete" {
		t.Errorf("fsm-cleanup hook %q, want post-delete", got)
	}
	containers, _, _ := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers")
	var script strings.Builder
	for _, c := range containers {
		for _, field := range []string{"command", "args"} {
			words, _, _ := unstructured.NestedStringSlice(c.(map[string]any), field)
			script.WriteString(strings.Join(words, " "))
		}
	}
	for _, want := range []string{
		"kubectl delete --ignore-not-found meshconfig -n 'fsm-system' fsm-mesh-config",
		"kubectl delete --ignore-not-found secret -n 'fsm-system' fsm-ca-bundle",
		"kubectl delete mutatingwebhookconfiguration -l app.kubernetes.io/name=flomesh.io,app.kubernetes.io/instance=fsm,app.kubernetes.io/version=v1.5.1,app=fsm-injector",
		"kubectl delete validatingwebhookconfiguration -l app.kubernetes.io/name=flomesh.io,app.kubernetes.io/instance=fsm,app.kubernetes.io/version=v1.5.1,app=fsm-controller",
	} {
		if !strings.Contains(script.String(), want) {
			t.Errorf("fsm-cleanup does not run %q", want)
		}
	}
	// The labels the takeover tests give FSM's run-time configurations are
	// the ones this Job selects.
	sel, err := labels.Parse("app.kubernetes.io/name=flomesh.io,app.kubernetes.io/instance=fsm,app.kubernetes.io/version=v1.5.1,app=fsm-injector")
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(fsmRuntimeLabels("fsm-injector"))) {
		t.Errorf("FSM's cleanup selector %q does not match the test's FSM labels %v", sel, fsmRuntimeLabels("fsm-injector"))
	}
}

// TestTakeoverStepsRender: step 1 of the takeover (createServices=false)
// renders no Service and step 2 (the default) the three FSM names; a render
// without a cluster (`helm template`, GitOps) carries no caBundle, since
// there is no live one to look up.
func TestTakeoverStepsRender(t *testing.T) {
	tests := []struct {
		name         string
		values       string
		wantServices []string
	}{
		{"step 1", "fsm: {webhooks: {createServices: false}}", nil},
		{"step 2", "", []string{"fsm-injector", "fsm-validator", "fsm-bootstrap"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, r := renderYAML(t, tc.values)
			var services []string
			for _, u := range r.All() {
				switch u.GetKind() {
				case "Service":
					services = append(services, u.GetName())
				case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
					hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
					for _, h := range hooks {
						if _, found, _ := unstructured.NestedFieldNoCopy(h.(map[string]any), "clientConfig", "caBundle"); found {
							t.Errorf("%s %s renders a caBundle without a live one", u.GetKind(), u.GetName())
						}
					}
				}
			}
			if !slices.Equal(services, tc.wantServices) {
				t.Errorf("Services %v, want %v", services, tc.wantServices)
			}
		})
	}
}
