package install_test

import (
	"context"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestInstallCRDsReplacesFSMCRD runs what `fsm-webhooks install-crds` (the
// CRD upgrade path, Helm never upgrading crds/) does over FSM v1.5.1's CRD as
// FSM's bootstrap created it, with a conversion stanza the converter wrote:
// the versions become the chart's, the conversion stanza stays, and a
// second run changes nothing.
func TestInstallCRDsReplacesFSMCRD(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := env.Client
	for _, u := range decodeFile(t, fsmReference("crds/config.flomesh.io_meshconfigs.yaml")) {
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var crd apiextv1.CustomResourceDefinition
	conversion := converterConversion(t)
	// The apiserver writes the CRD's status meanwhile: re-read on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil {
			return err
		}
		crd.Spec.Conversion = conversion
		return c.Update(ctx, &crd)
	}); err != nil {
		t.Fatal(err)
	}

	want, err := chart.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	// FSM's schemas differ from ours, or the test would prove nothing.
	same := len(crd.Spec.Versions) == len(want[0].Spec.Versions)
	for i := 0; same && i < len(crd.Spec.Versions); i++ {
		same = equality.Semantic.DeepEqual(crd.Spec.Versions[i].Schema, want[0].Spec.Versions[i].Schema)
	}
	if same {
		t.Fatal("FSM's CRD already has the chart's schemas")
	}
	for run := 1; run <= 2; run++ {
		if err := chart.ApplyCRDs(ctx, c); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		var got apiextv1.CustomResourceDefinition
		if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &got); err != nil {
			t.Fatal(err)
		}
		if run == 2 && got.ResourceVersion != crd.ResourceVersion {
			t.Errorf("second run wrote the CRD: resourceVersion %s -> %s", crd.ResourceVersion, got.ResourceVersion)
		}
		crd = got
		if !equality.Semantic.DeepEqual(got.Spec.Conversion, conversion) {
			t.Errorf("run %d: conversion stanza changed: %+v", run, got.Spec.Conversion)
		}
		if len(got.Spec.Versions) != len(want[0].Spec.Versions) {
			t.Fatalf("run %d: %d versions, want %d", run, len(got.Spec.Versions), len(want[0].Spec.Versions))
		}
		for i, v := range want[0].Spec.Versions {
			g := got.Spec.Versions[i]
			if g.Name != v.Name || g.Served != v.Served || g.Storage != v.Storage ||
				!equality.Semantic.DeepEqual(g.Schema, v.Schema) {
				t.Errorf("run %d: version %s differs from the chart's", run, v.Name)
			}
		}
	}
}
