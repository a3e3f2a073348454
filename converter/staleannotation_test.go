package converter

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// TestStaleExactJSONOnStoredObject: a converter from before
// conversion.flomesh.io/v1alpha3-json existed (fc56ffa) takes a v1alpha1
// write up with the typed conversion only, so the annotation a client holds
// from a newer converter's read (a rollback, then a kubectl replace/apply of
// what was read before it) is stored on the v1alpha3 object as any unknown
// annotation is. That object is a v1alpha3 object (spec.image, misc,
// connector, its warmup...): after the upgrade back, its old-version reads
// must show its data, not take it for an old version's write stored
// relabelled (decoded as v1alpha2, every v1alpha3-only field dropped for the
// defaults), and a write back through them must not store the defaults.
func TestStaleExactJSONOnStoredObject(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	s3, s1 := loadSchema(t, "v1alpha3"), loadSchema(t, "v1alpha1")
	const registry = "registry.example.com/flomesh"
	stored, errs := s3.apiserverView(t, presetWith(t, func(spec map[string]any) {
		spec["image"].(map[string]any)["registry"] = registry
		spec["warmup"] = map[string]any{"enable": true, "duration": "45s"}
	}))
	if len(errs) != 0 {
		t.Fatalf("setup: %v", errs)
	}
	raw, _ := json.Marshal(stored)

	// Read through v1alpha1 by today's converter (FSM's preset has
	// maxDataPlaneConnections: 0, so the view records exact JSON) ...
	read, _ := s1.apiserverView(t, roundTripAsServed(t, h, raw, "v1alpha1"))
	if read["metadata"].(map[string]any)["annotations"].(map[string]any)[lossless.AnnotationV1Alpha3JSON] == nil {
		t.Fatalf("setup: the v1alpha1 view has no %s", lossless.AnnotationV1Alpha3JSON)
	}
	// ... written back through the previous converter: typed ConvertTo,
	// the unknown annotation carried along.
	readRaw, _ := json.Marshal(read)
	old := &v1alpha1.MeshConfig{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(readRaw, old); err != nil {
		t.Fatal(err)
	}
	hub := &v1alpha3.MeshConfig{}
	if err := old.ConvertTo(hub); err != nil {
		t.Fatal(err)
	}
	hub.APIVersion, hub.Kind = group+"/v1alpha3", "MeshConfig"
	up, _ := json.Marshal(hub)
	staleStored, errs := s3.apiserverView(t, up)
	if len(errs) != 0 {
		t.Fatalf("setup: the previous converter's result fails the v1alpha3 schema: %v", errs)
	}
	if staleStored["metadata"].(map[string]any)["annotations"].(map[string]any)[lossless.AnnotationV1Alpha3JSON] == nil {
		t.Fatalf("setup: the stored object should carry the stale %s", lossless.AnnotationV1Alpha3JSON)
	}
	staleRaw, _ := json.Marshal(staleStored)

	for _, v := range []string{"v1alpha1", "v1alpha2"} {
		down, msg := convertOne(t, h, group+"/"+v, staleRaw)
		if down == nil {
			t.Fatalf("to %s: %s", v, msg)
		}
		for _, want := range []string{registry, "45s"} {
			if !strings.Contains(string(down), want) {
				t.Errorf("read as %s, the stored object's %q is gone (the object was taken for a relabelled old-version write):\n%s", v, want, down)
			}
		}
		back, errs := s3.apiserverView(t, roundTripAsServed(t, h, staleRaw, v, "v1alpha3"))
		if len(errs) != 0 {
			t.Errorf("written back through %s: the v1alpha3 schema refuses the stored object: %v", v, errs)
		}
		want := staleStored["spec"].(map[string]any)
		if s := back["spec"].(map[string]any); !jsonEqual(t, want, s) {
			b1, _ := json.Marshal(want)
			b2, _ := json.Marshal(s)
			t.Errorf("an unchanged write through %s changed the stored spec:\nbefore %s\nafter  %s", v, b1, b2)
		}
		if a := back["metadata"].(map[string]any)["annotations"]; a != nil {
			t.Errorf("written back through %s, the stored object still carries %v", v, a)
		}
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}
