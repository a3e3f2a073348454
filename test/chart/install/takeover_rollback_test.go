package install_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// takenOver is a cluster after a completed takeover.
type takenOver struct {
	env    *testenv.Env
	cn     *clusterNet
	root   fsmRoot
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

// rollbackUnderLoad rolls back as docs/migrate-from-fsm.md says while a pod
// is created every 100 ms: our pre-delete hook (its command, with the
// Job's arguments), `helm uninstall`, then FSM's release recreates its
// Services and FSM's injector, scaled back up, registers again. No create
// fails; pods created between the hook and FSM's registration are admitted
// without a sidecar (counted, the documented window); FSM's MeshConfig and
// CA Secret are the same objects, byte for byte.
func rollbackUnderLoad(ctx context.Context, t *testing.T, to takenOver) {
	c := to.env.Client
	caKey := types.NamespacedName{Namespace: ns, Name: "fsm-ca-bundle"}
	var caBefore corev1.Secret
	if err := c.Get(ctx, caKey, &caBefore); err != nil {
		t.Fatal(err)
	}
	mcKey := types.NamespacedName{Namespace: ns, Name: "fsm-mesh-config"}
	mcBefore := &unstructured.Unstructured{}
	mcBefore.SetAPIVersion("config.flomesh.io/v1alpha3")
	mcBefore.SetKind("MeshConfig")
	if err := c.Get(ctx, mcKey, mcBefore); err != nil {
		t.Fatal(err)
	}

	load := startPodLoad(c, "app", "rollback", 100*time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			load.stop()
		}
	}()
	waitFor(t, "our injector admits pods", time.Minute, func() bool { _, o, _ := load.counts(); return o >= 3 })

	// helm uninstall: the pre-delete hook first (no kubelet runs its Job
	// here), then the release's objects.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, to.env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := exec.CommandContext(ctx, to.bin, append(uninstallHookArgs(t, to.values), "--kubeconfig="+kubeconfig)...)
	if out, err := hook.CombinedOutput(); err != nil {
		t.Fatalf("uninstall-hook: %v\n%s", err, out)
	}
	// The hook scaled our Deployment to zero: our pod stops.
	to.cn.remove("fsm-webhooks-0")
	to.ours.stop()
	un := action.NewUninstall(helmConfig(t, to.env.KubeConfig))
	un.DisableHooks = true
	un.WaitStrategy = kube.HookOnlyStrategy
	if _, err := un.Run(charttest.ReleaseName); err != nil {
		t.Fatal(err)
	}
	_, _, fails := load.counts()
	t.Logf("%s uninstalled: %d uninjected so far, %d failed", time.Now().Format("15:04:05.000"), load.uninjected(), len(fails))

	// `helm upgrade fsm …`: FSM's release recreates the Services the
	// uninstall deleted.
	for _, u := range decodeFile(t, fsmReference("fsm-install-v1.5.1.yaml")) {
		if u.GetKind() != "Service" || (u.GetName() != "fsm-injector" && u.GetName() != "fsm-validator" && u.GetName() != "fsm-bootstrap") {
			continue
		}
		fsmHelmOwned(u)
		if err := c.Create(ctx, u); err != nil {
			t.Fatalf("Service %s: %v", u.GetName(), err)
		}
	}
	// `kubectl scale deploy/fsm-injector --replicas=1`: FSM's injector
	// serves and registers its configuration again.
	addr, _ := startFSMInjector(t, to.root)
	to.cn.set(&backend{name: "fsm-injector-1", labels: to.fsmPod, ports: map[string]string{"9090": addr}, ready: func() bool { return true }})
	if err := c.Create(ctx, fsmMutatingConfiguration(to.root.certPEM)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FSM's injector admits pods again", time.Minute, func() bool { f, _, _ := load.counts(); return f >= 5 })
	load.stop()
	stopped = true
	fsmN, oursN, failures := load.counts()
	t.Logf("pod creates every 100 ms across the rollback: %d admitted by ours, %d without a sidecar (no configuration registered), %d by FSM, %d failed",
		oursN, load.uninjected(), fsmN, len(failures))
	if len(failures) != 0 {
		t.Errorf("%d pod creates failed during the rollback, want 0: %v", len(failures), failures)
	}

	var caAfter corev1.Secret
	if err := c.Get(ctx, caKey, &caAfter); err != nil {
		t.Fatalf("fsm-ca-bundle after the rollback: %v", err)
	}
	if caAfter.ResourceVersion != caBefore.ResourceVersion || len(caAfter.Data) != len(caBefore.Data) {
		t.Errorf("fsm-ca-bundle written by the rollback: resourceVersion %s -> %s", caBefore.ResourceVersion, caAfter.ResourceVersion)
	}
	for k, v := range caBefore.Data {
		if !bytes.Equal(caAfter.Data[k], v) {
			t.Errorf("fsm-ca-bundle %s changed by the rollback", k)
		}
	}
	if !bytes.Equal(caAfter.Data["ca.crt"], to.root.certPEM) || !bytes.Equal(caAfter.Data["private.key"], to.root.keyPEM) {
		t.Error("fsm-ca-bundle no longer holds FSM's root and key")
	}
	mcAfter := mcBefore.DeepCopy()
	if err := c.Get(ctx, mcKey, mcAfter); err != nil {
		t.Fatalf("fsm-mesh-config after the rollback: %v", err)
	}
	if mcAfter.GetResourceVersion() != mcBefore.GetResourceVersion() {
		t.Errorf("fsm-mesh-config written by the rollback: resourceVersion %s -> %s", mcBefore.GetResourceVersion(), mcAfter.GetResourceVersion())
	}

}
