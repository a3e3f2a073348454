package install_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// takenOver is a cluster after a completed takeover.
type takenOver struct {
	env    *testenv.Env
	helm   takeoverHelm
	cn     *clusterNet
	root   meshCA
	bin    string
	ours   *serveProc
	fsmPod map[string]string // FSM's injector pod labels
	values map[string]any    // the release's values
}

// uninstallHookArgs are the arguments of the chart's pre-delete Job as the
// release's values render it.
func uninstallHookArgs(t *testing.T, values map[string]any) []string {
	t.Helper()
	r, err := charttest.Render(ns, values)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range r.All() {
		if u.GetKind() != "Job" || u.GetAnnotations()["helm.sh/hook"] != "pre-delete" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		if len(cs) != 1 {
			t.Fatalf("pre-delete Job %s has %d containers", u.GetName(), len(cs))
		}
		args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
		return args
	}
	t.Fatal("the chart renders no pre-delete Job")
	return nil
}

// handBackValues are the release's values with fsm.webhooks.handBack set, as
// `helm upgrade --reuse-values --set fsm.webhooks.handBack=true` makes them.
func handBackValues(t *testing.T, values map[string]any) map[string]any {
	t.Helper()
	out := runtime.DeepCopyJSON(values)
	if err := unstructured.SetNestedField(out, true, "fsm", "webhooks", "handBack"); err != nil {
		t.Fatal(err)
	}
	return out
}

// fsmInjectorRegisters is FSM v1.5.1's injector starting
// (createOrUpdateMutatingWebhook): its configuration is there already, so it
// replaces the webhooks with its own and keeps the object's metadata.
func fsmInjectorRegisters(ctx context.Context, t *testing.T, c client.Client, caCrt []byte) {
	t.Helper()
	var cfg admv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks = fsmInjectorWebhooks(caCrt)
	if err := c.Update(ctx, &cfg); err != nil {
		t.Fatalf("FSM's injector updating %s: %v", mwcName, err)
	}
}

// fsmBootstrapStarts is FSM v1.5.1's bootstrap starting (applyOrUpdateCRDs):
// it updates the MeshConfig CRD with conversion strategy None.
func fsmBootstrapStarts(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	var crd apiextv1.CustomResourceDefinition
	if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
	if err := c.Update(ctx, &crd); err != nil {
		t.Fatalf("FSM's bootstrap updating %s: %v", crdName, err)
	}
}

// fsmValidatorWebhooks are the webhooks FSM v1.5.1's controller writes on
// start (createOrUpdateValidatingWebhook, pkg/validator/patch.go), with
// TrafficTargets when smi.validateTrafficTarget.
func fsmValidatorWebhooks(caCrt []byte, trafficTargets bool) []admv1.ValidatingWebhook {
	cu := []admv1.OperationType{admv1.Create, admv1.Update}
	rules := []admv1.RuleWithOperations{
		{Operations: cu, Rule: admv1.Rule{APIGroups: []string{"policy.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"ingressbackends", "egresses", "egressgateways"}}},
		{Operations: cu, Rule: admv1.Rule{APIGroups: []string{"plugin.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"plugins", "pluginchains", "pluginconfigs"}}},
	}
	if trafficTargets {
		rules = append(rules, admv1.RuleWithOperations{Operations: cu, Rule: admv1.Rule{APIGroups: []string{"access.smi-spec.io"}, APIVersions: []string{"v1alpha3"}, Resources: []string{"traffictargets"}}})
	}
	return []admv1.ValidatingWebhook{{
		Name: "fsm-validator.k8s.io", ClientConfig: fsmClientConfig("fsm-validator", 9093, "/validate", caCrt),
		Rules:             rules,
		NamespaceSelector: fsmInjectorWebhooks(nil)[0].NamespaceSelector,
		FailurePolicy:     ptr.To(admv1.Fail),
		MatchPolicy:       ptr.To(admv1.Exact),
		SideEffects:       ptr.To(admv1.SideEffectClassNoneOnDryRun),
		// Unset by FSM: the apiserver's default.
		TimeoutSeconds:          ptr.To[int32](10),
		AdmissionReviewVersions: []string{"v1"},
	}}
}

// sameValidatingWebhook: got is want as the apiserver stores it (rule scope
// defaulted).
func sameValidatingWebhook(got, want admv1.ValidatingWebhook) bool {
	want.Rules = scopeDefaulted(want.Rules)
	return got.Name == want.Name && equality.Semantic.DeepEqual(got.ClientConfig, want.ClientConfig) && equality.Semantic.DeepEqual(got.Rules, want.Rules) &&
		equality.Semantic.DeepEqual(got.NamespaceSelector, want.NamespaceSelector) && *got.TimeoutSeconds == *want.TimeoutSeconds && *got.FailurePolicy == *want.FailurePolicy
}

// scopeDefaulted are rules as the apiserver stores them: scope "*" when unset.
func scopeDefaulted(rules []admv1.RuleWithOperations) []admv1.RuleWithOperations {
	out := slices.Clone(rules)
	for i := range out {
		if out[i].Scope == nil {
			out[i].Scope = ptr.To(admv1.AllScopes)
		}
	}
	return out
}

// rollbackUnderLoad hands the mesh back to FSM as docs/migrate-from-fsm.md
// says while a pod is created every loadInterval: (1) FSM's injector and bootstrap
// start again -- the injector registers its webhooks over the configuration
// our Services still route to ours, the bootstrap sets the CRD's conversion
// to None; (2) `helm upgrade --set fsm.webhooks.handBack=true` points the
// Services at FSM's pods; (3) `helm uninstall` (the pre-delete hook's
// command with the Job's arguments, then the release) leaves the Services
// and configurations to FSM. No create fails, every pod gets exactly one
// sidecar (one configuration, one injector behind it at a time), and FSM's
// MeshConfig and CA Secret are the same objects, byte for byte.
func rollbackUnderLoad(ctx context.Context, t *testing.T, to takenOver) {
	c := to.env.Client
	caBefore := fsmCASecret(ctx, t, c)
	mcKey := types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}
	mcBefore := &unstructured.Unstructured{}
	mcBefore.SetAPIVersion("config.flomesh.io/v1alpha3")
	mcBefore.SetKind("MeshConfig")
	if err := c.Get(ctx, mcKey, mcBefore); err != nil {
		t.Fatal(err)
	}

	every := loadInterval(to.root)
	load := startPodLoad(c, "app", "rollback", every)
	stopped := false
	defer func() {
		if !stopped {
			load.stop()
		}
	}()
	mark := func(step string) (fsm, ours int) {
		f, o, fails := load.counts()
		t.Logf("%s %s: admitted by FSM %d, by ours %d, failed %d, without sidecar %d", time.Now().Format("15:04:05.000"), step, f, o, len(fails), load.uninjected())
		return f, o
	}
	waitFor(t, "our injector admits pods", time.Minute, func() bool { _, o, _ := load.counts(); return o >= 3 })
	mark("ours serving")

	// 1. `kubectl scale deploy/fsm-injector deploy/fsm-bootstrap
	// --replicas=1`: FSM's injector pod runs, selected by no Service yet.
	addr, _ := startFSMInjector(t, to.root)
	to.cn.set(&backend{name: "fsm-injector-1", labels: to.fsmPod, ports: map[string]string{"9090": addr}, ready: func() bool { return true }})
	fsmInjectorRegisters(ctx, t, c, to.root.bundle())
	fsmBootstrapStarts(ctx, t, c)
	_, oursAt := mark("FSM's injector and bootstrap started")
	// FSM's webhooks still reach ours through the Service: same path, and a
	// caBundle (FSM's root) that our serving cert chains to.
	waitFor(t, "our injector admits through FSM's webhooks", time.Minute, func() bool { _, o, _ := load.counts(); return o >= oursAt+5 })

	// 2. The Services change hands back: their selectors pick FSM's pods.
	values := handBackValues(t, to.values)
	if err := to.helm.upgrade(ctx, t, to.env.KubeConfig, values, false); err != nil {
		t.Fatal(err)
	}
	// New connections of the apiserver now go to FSM's pod; the ones it
	// holds stay with ours until it stops (step 3), as conntrack keeps them.
	fsmAt, oursAt := mark("handed back")
	waitFor(t, "pods admitted after the switch", time.Minute, func() bool { f, o, _ := load.counts(); return f+o >= fsmAt+oursAt+10 })

	// 3. helm uninstall: the pre-delete hook first (no kubelet runs its Job
	// here), then the release's objects. Handed back, the hook's first
	// write scales our Deployment to zero and it waits for our pod to go
	// before it touches a bootstrap Secret: the pod stops here, since the
	// apiserver's established connections still reach it until then.
	to.cn.remove("fsm-webhooks-0")
	to.ours.stop()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, to.env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := exec.CommandContext(ctx, to.bin, append(uninstallHookArgs(t, values), "--kubeconfig="+kubeconfig)...)
	if out, err := hook.CombinedOutput(); err != nil {
		t.Fatalf("uninstall-hook: %v\n%s", err, out)
	}
	if err := to.helm.uninstall(t, to.env.KubeConfig); err != nil {
		t.Fatal(err)
	}
	fsmAt, _ = mark("uninstalled")
	if fsmAt == 0 {
		t.Log("FSM's injector admitted nothing before our pod stopped: the apiserver kept its connection to ours")
	}
	waitFor(t, "FSM's injector admits pods after the uninstall", time.Minute, func() bool { f, _, _ := load.counts(); return f >= fsmAt+30 })
	load.stop()
	stopped = true
	fsmN, oursN, failures := load.counts()
	t.Logf("pod creates every %s across the rollback: %d admitted by ours, %d by FSM, %d without a sidecar, %d failed, slowest %s",
		every, oursN, fsmN, load.uninjected(), len(failures), load.slowestCreate().Round(time.Millisecond))
	for i, f := range failures {
		if i == 5 {
			t.Logf("... %d more", len(failures)-i)
			break
		}
		t.Logf("failed: %s", f)
	}
	if len(failures) != 0 {
		t.Errorf("%d pod creates failed during the rollback, want 0", len(failures))
	}
	if n := load.uninjected(); n != 0 {
		t.Errorf("%d pods admitted without a sidecar during the rollback, want 0", n)
	}

	checkHandedBack(ctx, t, c, to.root.bundle())

	// Every pod ours injected still has its bootstrap Secret: the hook's
	// hand-over deleted none of a live pod.
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace("app"), client.HasLabels{"fsm-proxy-uuid"}); err != nil {
		t.Fatal(err)
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace("app"), client.HasLabels{"fsm-proxy-uuid"}); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range secrets.Items {
		have[s.Name] = true
	}
	missing := 0
	for _, p := range pods.Items {
		if !have[fsmnames.BootstrapSecretName(p.Labels["fsm-proxy-uuid"])] {
			missing++
		}
	}
	if missing != 0 {
		t.Errorf("%d of %d pods our injector admitted lost their bootstrap Secret in the rollback", missing, len(pods.Items))
	}

	// FSM's CA Secret (none with Vault) is the same object, byte for byte.
	caAfter := fsmCASecret(ctx, t, c)
	switch {
	case caBefore == nil || caAfter == nil:
		if caBefore != caAfter {
			t.Errorf("fsm-ca-bundle before the rollback %v, after %v", caBefore != nil, caAfter != nil)
		}
	case caAfter.ResourceVersion != caBefore.ResourceVersion:
		t.Errorf("fsm-ca-bundle written by the rollback: resourceVersion %s -> %s", caBefore.ResourceVersion, caAfter.ResourceVersion)
	}
	var got map[string][]byte
	if caAfter != nil {
		got = caAfter.Data
	}
	if want := to.root.secretData(); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("fsm-ca-bundle after the rollback has keys %v, want FSM's %v, byte for byte", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	mcAfter := mcBefore.DeepCopy()
	if err := c.Get(ctx, mcKey, mcAfter); err != nil {
		t.Fatalf("fsm-mesh-config after the rollback: %v", err)
	}
	if mcAfter.GetResourceVersion() != mcBefore.GetResourceVersion() {
		t.Errorf("fsm-mesh-config written by the rollback: resourceVersion %s -> %s", mcBefore.GetResourceVersion(), mcAfter.GetResourceVersion())
	}
}

// fsmCASecret is fsm-ca-bundle, or nil when there is none.
func fsmCASecret(ctx context.Context, t *testing.T, c client.Client) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-ca-bundle"}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		t.Fatal(err)
	}
	return &s
}

// checkHandedBack: what the uninstall left is FSM's to serve -- the
// injector's configuration as FSM's injector wrote it (its Service and path,
// FSM's root as caBundle), the validating configuration with FSM's webhook
// only, the Services selecting FSM's pods, the CRD's conversion None (as
// FSM's bootstrap sets it); fsm-bootstrap, which FSM's servers do not use,
// went with the release.
func checkHandedBack(ctx context.Context, t *testing.T, c client.Client, root []byte) {
	t.Helper()
	var mwc admv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwc); err != nil {
		t.Fatalf("%s after the rollback: %v", mwcName, err)
	}
	want := fsmInjectorWebhooks(root)[0]
	want.Rules = scopeDefaulted(want.Rules)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%s has %d webhooks, want FSM's one", mwcName, len(mwc.Webhooks))
	}
	got := mwc.Webhooks[0]
	if !equality.Semantic.DeepEqual(got.ClientConfig, want.ClientConfig) || !equality.Semantic.DeepEqual(got.Rules, want.Rules) ||
		!equality.Semantic.DeepEqual(got.NamespaceSelector, want.NamespaceSelector) || *got.TimeoutSeconds != *want.TimeoutSeconds || *got.FailurePolicy != *want.FailurePolicy {
		t.Errorf("%s webhook %+v, want FSM's %+v", mwcName, got, want)
	}
	var vwc admv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: vwcName}, &vwc); err != nil {
		t.Fatalf("%s after the rollback: %v", vwcName, err)
	}
	if len(vwc.Webhooks) != 1 || !sameValidatingWebhook(vwc.Webhooks[0], fsmValidatorWebhooks(root, true)[0]) {
		t.Errorf("%s webhooks %+v, want FSM's fsm-validator.k8s.io with FSM's root", vwcName, vwc.Webhooks)
	}
	for svc, app := range map[string]string{"fsm-injector": "fsm-injector", "fsm-validator": "fsm-controller"} {
		var s corev1.Service
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: svc}, &s); err != nil {
			t.Errorf("Service %s after the rollback: %v", svc, err)
			continue
		}
		if !maps.Equal(s.Spec.Selector, map[string]string{"app": app}) {
			t.Errorf("Service %s selector %v, want FSM's app=%s", svc, s.Spec.Selector, app)
		}
	}
	var s corev1.Service
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fsm-bootstrap"}, &s); !apierrors.IsNotFound(err) {
		t.Errorf("Service fsm-bootstrap after the rollback: %v, want deleted with the release", err)
	}
	var crd apiextv1.CustomResourceDefinition
	if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
		t.Fatal(err)
	}
	if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextv1.NoneConverter {
		t.Errorf("CRD %s conversion %+v, want None", crdName, crd.Spec.Conversion)
	}
}

// TestHandBackRender: step 2 of the rollback (fsm.webhooks.handBack) renders
// the Services fsm-injector and fsm-validator as FSM's chart has them, the
// injector's webhook as FSM's injector writes it and the validator's as FSM's
// controller does (per smi.validateTrafficTarget), marks what FSM keeps
// for `helm uninstall`, keeps the configurations in the hook's arguments and
// runs no crd-upgrade hook; the default render marks nothing.
func TestHandBackRender(t *testing.T) {
	tests := []struct {
		name           string
		values         string
		handBack       bool
		trafficTargets bool // FSM's validator is sent TrafficTargets
		// reconcile is the configurations' flomesh.io/reconcile label ("":
		// none): out of FSM's reconciler while ours, FSM's value handed back.
		reconcile string
	}{
		{"default", "fsm: {meshConfig: {create: false}}", false, false, "false"},
		{"default, fsm.enableReconciler", "fsm: {meshConfig: {create: false}, enableReconciler: true}", false, false, "false"},
		{"hand back", "fsm: {meshConfig: {create: false}, webhooks: {handBack: true}}", true, true, ""},
		{"hand back, fsm.enableReconciler", "fsm: {meshConfig: {create: false}, enableReconciler: true, webhooks: {handBack: true}}", true, true, "true"},
		{"hand back, smi.validateTrafficTarget false", "{fsm: {meshConfig: {create: false}, webhooks: {handBack: true}}, smi: {validateTrafficTarget: false}}", true, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			values, r := renderYAML(t, tc.values)
			wantKept := map[string]bool{}
			if tc.handBack {
				wantKept = map[string]bool{"Service/fsm-injector": true, "Service/fsm-validator": true,
					"MutatingWebhookConfiguration/" + mwcName: true, "ValidatingWebhookConfiguration/" + vwcName: true}
			}
			kept := map[string]bool{}
			for _, u := range r.All() {
				id := u.GetKind() + "/" + u.GetName()
				if u.GetAnnotations()["helm.sh/resource-policy"] == "keep" {
					kept[id] = true
				}
				if u.GetAnnotations()["helm.sh/hook"] == "pre-upgrade" && tc.handBack {
					t.Errorf("%s: a pre-upgrade hook in a hand-back (FSM's bootstrap owns the CRD again)", id)
				}
				if u.GetKind() == "MutatingWebhookConfiguration" || u.GetKind() == "ValidatingWebhookConfiguration" {
					if got, ok := u.GetLabels()["flomesh.io/reconcile"]; got != tc.reconcile || ok != (tc.reconcile != "") {
						t.Errorf("%s label flomesh.io/reconcile %q (set: %v), want %q", id, got, ok, tc.reconcile)
					}
				}
				switch id {
				case "Service/fsm-injector", "Service/fsm-validator", "Service/fsm-bootstrap":
					sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector")
					fsmApp := map[string]string{"Service/fsm-injector": "fsm-injector", "Service/fsm-validator": "fsm-controller"}[id]
					if toFSM := tc.handBack && fsmApp != ""; toFSM != maps.Equal(sel, map[string]string{"app": fsmApp}) {
						t.Errorf("%s selector %v (selecting FSM's pods: want %v)", id, sel, toFSM)
					}
				case "MutatingWebhookConfiguration/" + mwcName:
					var mwc admv1.MutatingWebhookConfiguration
					if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mwc); err != nil {
						t.Fatal(err)
					}
					want := fsmInjectorWebhooks(nil)[0]
					want.Rules = scopeDefaulted(want.Rules)
					got := mwc.Webhooks[0]
					same := equality.Semantic.DeepEqual(got.Rules, want.Rules) && equality.Semantic.DeepEqual(got.NamespaceSelector, want.NamespaceSelector) &&
						equality.Semantic.DeepEqual(got.ClientConfig.Service, want.ClientConfig.Service) && *got.TimeoutSeconds == *want.TimeoutSeconds
					if same != tc.handBack {
						t.Errorf("%s webhook as FSM's injector writes it: %v, want %v\n got %+v", id, same, tc.handBack, got)
					}
				case "ValidatingWebhookConfiguration/" + vwcName:
					var vwc admv1.ValidatingWebhookConfiguration
					if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &vwc); err != nil {
						t.Fatal(err)
					}
					if want := map[bool]int{false: 2, true: 1}[tc.handBack]; len(vwc.Webhooks) != want {
						t.Fatalf("%s has %d webhooks, want %d", id, len(vwc.Webhooks), want)
					}
					if same := sameValidatingWebhook(vwc.Webhooks[0], fsmValidatorWebhooks(nil, tc.trafficTargets)[0]); same != tc.handBack {
						t.Errorf("%s webhook as FSM's controller writes it: %v, want %v\n got %+v", id, same, tc.handBack, vwc.Webhooks[0])
					}
				}
			}
			if !maps.Equal(kept, wantKept) {
				t.Errorf("kept by helm uninstall: %v, want %v", kept, wantKept)
			}
			args := uninstallHookArgs(t, values)
			if slices.Contains(args, "--keep-webhook-configurations") != tc.handBack || !slices.Contains(args, "--mesh-config-name=") {
				t.Errorf("uninstall hook arguments %q", args)
			}
		})
	}
}
