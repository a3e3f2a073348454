package injector_test

import (
	"context"
	"slices"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// testWarningsReachClientWhole: a pod that trips nearly every warning is
// created through the apiserver, and the client's warning handler receives
// each warning exactly as the injector wrote it. The apiserver cuts every
// warning of a response to 256 runes once they pass 4096 in total: the
// injector's 17 warnings of 120-360 runes for this pod (and the
// apiserver's own 3) were all cut.
func (e *e2e) testWarningsReachClientWhole(t *testing.T) {
	ctx := context.Background()
	cl, rec := e.warningClient(t)
	ns := e.namespace(t, ctx, "warnings-whole", true)
	p := injector.WorstWarningsPod("worst", ns)
	nsObj := &corev1.Namespace{}
	if err := e.cl.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	m, err := injector.Mutate(injector.MutateInput{Pod: p.DeepCopy(), Namespace: nsObj, Settings: injector.DefaultSettings(), ProxyUUID: "u-1",
		Mesh: injector.Mesh{Name: meshName, FSMNamespace: fsmNamespace, TrustDomain: "cluster.local", ClusterDomain: "cluster.local",
			SidecarImage: injector.DefaultSidecarImage, InitImage: injector.DefaultInitImage, HealthcheckImage: injector.DefaultHealthcheckImage}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, total := rec.all(), 0
	for _, w := range got {
		total += utf8.RuneCountInString(w)
	}
	t.Logf("%d warnings received, %d runes in total", len(got), total)
	// The apiserver adds its own (the app's ports the sidecar declares
	// too are duplicates): every one the injector sent must be among them.
	for _, w := range m.Warnings {
		if !slices.Contains(got, w) {
			t.Errorf("sent %q\nreceived none such; received %q", w, got)
		}
	}
	for _, w := range got {
		if n := utf8.RuneCountInString(w); n > warning.MaxRunes {
			t.Errorf("warning of %d runes, over %d: %s", n, warning.MaxRunes, w)
		}
	}
}
