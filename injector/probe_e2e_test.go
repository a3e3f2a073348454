package injector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestProbeNamespaceLeavesTheMesh: the readiness probe (/readyz/injector,
// serve's --injector-probe-namespace) dry-runs a pod in its namespace.
// When that namespace leaves the mesh (`fsm namespace remove`, moved to
// another mesh, labelled flomesh.io/ignore), the apiserver's
// namespaceSelector no longer calls the injector there, and the probe said
// "the injector webhook is not active" while the webhook served every
// other namespace: the operator was sent to the webhook, not the label.
// The failure must name the namespace and the label to fix. A namespace
// annotation disabling injection says nothing about the webhook: the probe
// pod asks for injection itself and passes.
func TestProbeNamespaceLeavesTheMesh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := startCoreEnv(t, fsmNamespace)
	c := env.Client
	h := tresorInjector(ctx, t, env, 2)
	registerInjector(ctx, t, c, h, "injector-probe-namespace-test")
	const ns = "probe-ns"
	injectedNamespace(ctx, t, c, ns)
	mesh := injector.Mesh{Name: meshName, FSMNamespace: fsmNamespace}

	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	patch := func(t *testing.T, p string) {
		t.Helper()
		if err := c.Patch(ctx, nsObj, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	notInMesh := "namespace probe-ns is not in mesh fsm: label it flomesh.io/monitored-by=fsm"
	for _, step := range []struct {
		name, patch string
		want        string // "": the probe passes
	}{
		{"injection disabled on the namespace", `{"metadata":{"annotations":{"` + injector.SidecarInjectionAnnotation + `":"disabled"}}}`, ""},
		{"fsm namespace remove", string(fsmNamespaceRemove), notInMesh},
		{"fsm namespace add", string(fsmNamespaceAdd(meshName)), ""},
		{"labelled ignore", `{"metadata":{"labels":{"` + fsmnames.IgnoreLabel + `":"true"}}}`,
			"namespace probe-ns is excluded from mesh fsm by its label flomesh.io/ignore: remove the label"},
		{"moved to another mesh", `{"metadata":{"labels":{"` + fsmnames.IgnoreLabel + `":null,"` + fsmnames.MonitoredByLabel + `":"other"}}}`, notInMesh},
	} {
		t.Run(step.name, func(t *testing.T) {
			patch(t, step.patch)
			probeSays(ctx, t, c, mesh, ns, step.want)
		})
	}
	t.Run("namespace missing", func(t *testing.T) {
		probeSays(ctx, t, c, mesh, "probe-gone", "namespace probe-gone not found: create it labelled flomesh.io/monitored-by=fsm")
	})
}

// probeSays waits (the apiserver's namespace lister lags a relabel) until
// the probe in ns passes (want "") or fails saying want.
func probeSays(ctx context.Context, t *testing.T, c client.Client, mesh injector.Mesh, ns, want string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		err = injector.Probe(ctx, c, mesh, ns)
		if (want == "" && err == nil) || (want != "" && err != nil && strings.Contains(err.Error(), want)) {
			t.Logf("probe: %v", err)
			return
		}
	}
	if want == "" {
		t.Fatalf("probe in %s: %v; want it to pass", ns, err)
	}
	t.Fatalf("probe in %s: %v; want an error saying %q", ns, err, want)
}
