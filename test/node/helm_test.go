//go:build e2enode

package node_test

import (
	"context"
	"os"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

// installChart runs `helm install` of the chart into chartNS from the host,
// with the node's kubeconfig, and returns the Helm client for the test's
// later steps (upgrade, uninstall). It does not wait for the pods: the tests
// wait for what each of them needs.
func installChart(ctx context.Context, t *testing.T, c *node.Cluster) *charttest.Cluster {
	t.Helper()
	kubeconfig, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	helm, err := charttest.NewCluster(kubeconfig, t.TempDir(), chartNS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.Install(ctx, nil); err != nil {
		t.Fatalf("%v (logs in %s)", err, c.LogDir)
	}
	return helm
}
