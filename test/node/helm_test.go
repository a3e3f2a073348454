//go:build e2enode

package node_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

// startChart starts a node that has the fsm-webhooks image and installs the
// chart with its default values (installChart). The returned context bounds
// the rest of the test to 10 minutes from then (the image build and the
// node's start are not counted); it is cancelled when the test ends.
func startChart(t *testing.T) (context.Context, *node.Cluster, *charttest.Cluster) {
	t.Helper()
	c := node.Start(t, node.Options{Images: []images.Spec{fsmWebhooksImage(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx, c, installChart(ctx, t, c)
}

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
