package chart_test

import (
	"fmt"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestReleasesShareNoObjectName: two meshes' releases in one cluster name no
// object alike outside their own namespaces (cluster-scoped ones, and
// kube-system's). Helm refuses an object another release owns, but a hook's
// before-hook-creation and hook-succeeded delete the object of the hook's
// name whoever owns it: with the hooks named <name>-<meshName>, `helm
// uninstall x` deleted the ClusterRole and ClusterRoleBinding of mesh
// uninstall-x's servers (fsm-webhooks-uninstall-x), and `helm upgrade x`
// those of mesh crd-upgrade-x, whose servers then lost every cluster
// permission. Mesh names are chosen to provoke exactly that.
func TestReleasesShareNoObjectName(t *testing.T) {
	meshes := []string{"x", "uninstall-x", "crd-upgrade-x", "x-conversion-lease"}
	owner := map[string]string{} // kind/namespace/name -> mesh
	for _, mesh := range meshes {
		ns := mesh + "-system"
		r, err := charttest.Render(ns, mustValues(t, fmt.Sprintf("fsm: {meshName: %s}", mesh)))
		if err != nil {
			t.Fatalf("render mesh %s: %v", mesh, err)
		}
		if len(r.Hooks) == 0 {
			t.Fatalf("mesh %s: no hooks rendered", mesh)
		}
		for _, o := range r.All() {
			if o.GetNamespace() == ns {
				continue // each release's own namespace
			}
			key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			if other, ok := owner[key]; ok && other != mesh {
				t.Errorf("%s is rendered by the releases of mesh %s and of mesh %s", key, other, mesh)
			}
			owner[key] = mesh
		}
	}
}
