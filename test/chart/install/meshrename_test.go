package install_test

import (
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestMeshRenameRefusedOnUpgrade: `helm upgrade --set fsm.meshName=<other>`
// over a running mesh is refused at render, naming the value and both names,
// and changes nothing. Rendered, it replaced fsm-webhook-<old> by a
// configuration selecting only namespaces labelled with the new name (those
// labelled with the old one got pods without a sidecar, silently), and left
// every bootstrap Secret labelled app.kubernetes.io/instance=<old> to no one:
// the servers' controllers, the Secret write policy and the uninstall hook
// select their own mesh's, so those Secrets (each a client key) were never
// deleted with their pods, while the tresor root rotation, whose drop of the
// old root waits on every mesh's Secrets, waited on them for ever.
func TestMeshRenameRefusedOnUpgrade(t *testing.T) {
	ctx, env := startAPIServer(t, 4*time.Minute)
	helm := newHelm(t, env)
	if _, err := helm.Install(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// The same name, spelt out, is no rename.
	if _, err := helm.Upgrade(ctx, map[string]any{"fsm": map[string]any{"meshName": mesh}}); err != nil {
		t.Fatalf("upgrade keeping mesh %s: %v", mesh, err)
	}
	_, err := helm.Upgrade(ctx, map[string]any{"fsm": map[string]any{"meshName": "blue"}})
	if err == nil {
		t.Fatal("helm upgrade renamed the mesh fsm -> blue; want it refused")
	}
	for _, want := range []string{"fsm.meshName", `"blue"`, `"fsm"`, "helm uninstall"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %s: %v", want, err)
		}
	}
	// Nothing changed: the old mesh's configuration stays, no new one.
	if err := env.Client.Get(ctx, client.ObjectKey{Name: mwcName}, &admv1.MutatingWebhookConfiguration{}); err != nil {
		t.Errorf("%s after the refused rename: %v", mwcName, err)
	}
	var blue admv1.MutatingWebhookConfiguration
	if err := env.Client.Get(ctx, client.ObjectKey{Name: fsmnames.MutatingConfigurationName("blue")}, &blue); err == nil {
		t.Errorf("%s created by the refused rename", blue.Name)
	}
}
