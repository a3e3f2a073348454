package main

import (
	"bytes"
	"context"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestInstallCRDsCommand: `install-crds`, as the chart's pre-upgrade hook
// and an operator run it, creates the MeshConfig CRD on a real apiserver
// and returns once it is Established (its client maps the CRD kind itself,
// without discovery: TestTimeoutIsNamed).
func TestInstallCRDsCommand(t *testing.T) {
	env, kubeconfig := adminEnv(t, "fsm-system")
	root := newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"install-crds", "--kubeconfig=" + kubeconfig, "--timeout=1m"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	apiext, err := apiextclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crd, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return
		}
	}
	t.Errorf("CRD %s not Established after install-crds: %+v", crd.Name, crd.Status.Conditions)
}
