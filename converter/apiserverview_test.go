package converter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// These tests look at conversion the way the apiserver sees it: JSON, pruned
// and defaulted by the CRD's structural schema (what is stored and what a
// reader gets), not Go values compared with apimachinery's semantic
// equality. A no-op write through v1alpha1/v1alpha2 (GET, PUT unchanged)
// stores converter(converter(stored)); whatever differs below is rewritten
// in etcd (new resourceVersion, a watch event to every MeshConfig watcher)
// and is what v1alpha3 readers see afterwards.

const crdPath = "../charts/fsm-webhooks/crds/config.flomesh.io_meshconfigs.yaml"

type crdSchema struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
}

func loadSchema(t *testing.T, version string) crdSchema {
	t.Helper()
	raw, err := os.ReadFile(filepath.FromSlash(crdPath))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apixv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(crd.Spec.Versions, func(v apixv1.CustomResourceDefinitionVersion) bool { return v.Name == version })
	if i < 0 {
		t.Fatalf("CRD has no version %s", version)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apixv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[i].Schema.OpenAPIV3Schema, internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(internal)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := validation.NewSchemaValidator(internal)
	if err != nil {
		t.Fatal(err)
	}
	return crdSchema{structural: s, validator: v}
}

// apiserverView is obj as the apiserver handles a write of it in the
// schema's version: decoded as unstructured JSON, pruned, nulls of
// non-nullable fields dropped, defaulted; and the schema's verdict on it.
func (s crdSchema) apiserverView(t *testing.T, obj []byte) (map[string]any, field.ErrorList) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(obj); err != nil {
		t.Fatal(err)
	}
	structuralpruning.Prune(u.Object, s.structural, true)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, s.structural)
	structuraldefaulting.Default(u.Object, s.structural)
	return u.Object, validation.ValidateCustomResource(nil, u.Object, s.validator)
}

// roundTripAsServed converts obj through versions with the handler, each
// converted object pruned and defaulted by its version's schema as the
// apiserver does (on a read: the converted object; on a write: the request)
// before it goes on.
func roundTripAsServed(t *testing.T, h *Handler, obj []byte, versions ...string) []byte {
	t.Helper()
	for _, v := range versions {
		out, msg := convertOne(t, h, group+"/"+v, obj)
		if out == nil {
			t.Fatalf("converting to %s: %s", v, msg)
		}
		m, _ := loadSchema(t, v).apiserverView(t, out)
		var err error
		if obj, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	return obj
}

var oldVersionPaths = [][]string{
	{"v1alpha1", "v1alpha3"},
	{"v1alpha2", "v1alpha3"},
	{"v1alpha1", "v1alpha2", "v1alpha3"},
}

func presetWith(t *testing.T, edit func(spec map[string]any)) []byte {
	t.Helper()
	m := presetMap(t)
	if edit != nil {
		edit(m["spec"].(map[string]any))
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// minimalMeshConfig has only the sections v1alpha3 requires.
var minimalMeshConfig = []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","namespace":"fsm-system"},` +
	`"spec":{"image":{},"misc":{},"connector":{"lb":{},"viaGateway":{"clusterIP":"","externalIP":"","ingressAddr":"",` +
	`"ingressHTTPPort":0,"ingressGRPCPort":0,"egressAddr":"","egressHTTPPort":0,"egressGRPCPort":0}}}}`)

// TestUnchangedWriteThroughOldVersion: a MeshConfig read and written back
// unchanged through v1alpha1 or v1alpha2 (GET, PUT) is stored as the
// v1alpha3 object it was, to the JSON: sections it leaves out stay out
// (else they come back as Go zero values the v1alpha3 schema refuses),
// explicit zeros stay (FSM's own preset has maxDataPlaneConnections: 0 and
// los: []), quantities keep their spelling.
func TestUnchangedWriteThroughOldVersion(t *testing.T) {
	withoutPresetZeros := func(spec map[string]any) {
		sc := spec["sidecar"].(map[string]any)
		delete(sc, "maxDataPlaneConnections")
		delete(sc["localDNSProxy"].(map[string]any)["wildcard"].(map[string]any), "los")
	}
	h := NewHandler(meshScheme(t), group, logr.Discard())
	s := loadSchema(t, "v1alpha3")
	for name, obj := range map[string][]byte{
		"minimal":                               minimalMeshConfig,
		"FSM's preset, explicit zeros included": presetWith(t, nil),
		"preset without pluginChains and clusterSet": presetWith(t, func(spec map[string]any) {
			delete(spec, "pluginChains")
			delete(spec, "clusterSet")
			withoutPresetZeros(spec)
		}),
		"quantities as written": presetWith(t, func(spec map[string]any) {
			withoutPresetZeros(spec)
			sc := spec["sidecar"].(map[string]any)
			sc["resources"] = map[string]any{
				"limits":   map[string]any{"cpu": "1000m", "memory": "1.5Gi"},
				"requests": map[string]any{"cpu": int64(2), "memory": "0.5Gi"},
			}
			sc["initResources"] = map[string]any{"limits": map[string]any{"cpu": "2000m"}}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			before, errs := s.apiserverView(t, obj)
			if len(errs) != 0 {
				t.Fatalf("setup: the v1alpha3 schema refuses the object: %v", errs)
			}
			obj, _ := json.Marshal(before) // as stored and read
			for _, path := range oldVersionPaths {
				after, errs := s.apiserverView(t, roundTripAsServed(t, h, obj, path...))
				if len(errs) != 0 {
					t.Errorf("v1alpha3 → %v: the v1alpha3 schema refuses the object the converter produced: %v", path, errs)
				}
				if !apiequality.Semantic.DeepEqual(before["spec"], after["spec"]) {
					t.Errorf("v1alpha3 → %v: the stored spec changed (-before +after):\n%s", path, diff.Diff(before["spec"], after["spec"]))
				}
				if a := after["metadata"].(map[string]any)["annotations"]; a != nil {
					t.Errorf("v1alpha3 → %v: the stored object carries annotations %v", path, a)
				}
			}
		})
	}
}

// TestEditThroughOldVersionWins: what a write through an old version
// changes is stored as written; only what it left as read gets the
// v1alpha3 JSON back.
func TestEditThroughOldVersionWins(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	s3, s1 := loadSchema(t, "v1alpha3"), loadSchema(t, "v1alpha1")
	stored, errs := s3.apiserverView(t, presetWith(t, func(spec map[string]any) {
		delete(spec, "repoServer")
		sc := spec["sidecar"].(map[string]any)
		sc["resources"] = map[string]any{"limits": map[string]any{"cpu": "1000m", "memory": "1.5Gi"}}
	}))
	if len(errs) != 0 {
		t.Fatalf("setup: %v", errs)
	}
	raw, _ := json.Marshal(stored)
	old, _ := s1.apiserverView(t, roundTripAsServed(t, h, raw, "v1alpha1"))
	spec := old["spec"].(map[string]any)
	spec["sidecar"].(map[string]any)["resources"].(map[string]any)["limits"].(map[string]any)["cpu"] = "3"
	spec["repoServer"].(map[string]any)["codebase"] = "http://repo:6060/"
	edited, _ := json.Marshal(old)
	after, errs := s3.apiserverView(t, roundTripAsServed(t, h, edited, "v1alpha3"))
	if len(errs) != 0 {
		t.Errorf("the v1alpha3 schema refuses the stored object: %v", errs)
	}
	want := stored["spec"].(map[string]any)
	want["sidecar"].(map[string]any)["resources"].(map[string]any)["limits"].(map[string]any)["cpu"] = "3"
	// A section the v1alpha3 object did not have is stored as written
	// through v1alpha1, with the fields it showed.
	want["repoServer"] = map[string]any{"codebase": "http://repo:6060/", "ipaddr": ""}
	if !apiequality.Semantic.DeepEqual(want, after["spec"]) {
		t.Errorf("the stored spec (-want +got):\n%s", diff.Diff(want, after["spec"]))
	}
}

// TestObjectWithoutSpecRoundTrips: a MeshConfig stored without a spec (the
// v1alpha3 schema does not require one) converts to the old versions and
// back: the differences recorded on the way down are all under spec, where
// the way up accepts them.
func TestObjectWithoutSpecRoundTrips(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	obj := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","namespace":"fsm-system"}}`)
	for _, v := range []string{"v1alpha1", "v1alpha2"} {
		down, msg := convertOne(t, h, group+"/"+v, obj)
		if down == nil {
			t.Fatalf("to %s: %s", v, msg)
		}
		back, msg := convertOne(t, h, group+"/v1alpha3", down)
		if back == nil {
			t.Fatalf("%s back to v1alpha3: %s", v, msg)
		}
	}
}

// These tests cover objects the round-trip fuzzers never generate: what the
// apiserver stores while the CRD's conversion strategy is None (FSM as
// shipped, or this project's documented rollback, converter/README.md step
// 5), where a write through v1alpha1/v1alpha2 is relabelled v1alpha3
// unconverted, and the old-version view as the old version's own schema
// validates it.

// relabelledV1alpha1 is what the apiserver stores, under strategy None, for
// an unchanged PUT through v1alpha1 of the object the converter served: the
// v1alpha1 view (its annotations included), relabelled v1alpha3, read
// through the v1alpha3 schema (pruned and defaulted, not validated).
func relabelledV1alpha1(t *testing.T, h *Handler, edit func(spec map[string]any)) []byte {
	t.Helper()
	s3, s1 := loadSchema(t, "v1alpha3"), loadSchema(t, "v1alpha1")
	stored, errs := s3.apiserverView(t, presetWith(t, edit))
	if len(errs) != 0 {
		t.Fatalf("setup: %v", errs)
	}
	raw, _ := json.Marshal(stored)
	down, msg := convertOne(t, h, group+"/v1alpha1", raw)
	if down == nil {
		t.Fatalf("setup: to v1alpha1: %s", msg)
	}
	view, _ := s1.apiserverView(t, down)
	view["apiVersion"] = group + "/v1alpha3" // strategy None
	rel, _ := json.Marshal(view)
	relabelled, _ := s3.apiserverView(t, rel)
	out, err := json.Marshal(relabelled)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRelabelledSampledFractionNumberConverts: under strategy None a
// v1alpha1 write keeps its sampledFraction number in the stored v1alpha3
// object (FSM's v1alpha3 schema is not checked on storage). With the
// converter (re)installed, that one object must not fail every conversion
// to v1alpha1/v1alpha2 ("decoding the hub object: cannot unmarshal
// number"), and with it every GET and LIST of MeshConfigs in those
// versions, which FSM itself serves (relabelled): the number is a valid
// v1alpha1 value and converts as the v1alpha1 number it is.
func TestRelabelledSampledFractionNumberConverts(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	obj := relabelledV1alpha1(t, h, func(spec map[string]any) {
		spec["observability"].(map[string]any)["tracing"] = map[string]any{"enable": true, "address": "jaeger", "sampledFraction": "0.25"}
	})
	if !strings.Contains(string(obj), `"sampledFraction":0.25`) {
		t.Fatalf("setup: the relabelled object should hold the v1alpha1 number: %s", obj)
	}
	for _, v := range []string{"v1alpha1", "v1alpha2"} {
		out, msg := convertOne(t, h, group+"/"+v, obj)
		if out == nil {
			t.Errorf("a stored object relabelled from a v1alpha1 write (sampledFraction 0.25) does not convert to %s: %s", v, msg)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		got := m["spec"].(map[string]any)["observability"].(map[string]any)["tracing"].(map[string]any)["sampledFraction"]
		if got != 0.25 && got != "0.25" {
			t.Errorf("to %s: sampledFraction = %#v, want 0.25", v, got)
		}
	}
}

// TestRelabelledWriteKeepsAnnotationData: converter/README.md (rollback,
// step 5) promises that objects written through an old version while the
// strategy is None "keep the annotations, which a later converter restores
// from". The stored object is labelled v1alpha3, so the converter only
// ever converts it down: were the annotations taken as stray (ConvertFrom
// copies the metadata, KeepHub overwrites
// conversion.flomesh.io/v1alpha3-fields with what the stripped spec holds,
// FromHub drops v1alpha3-json), the custom image registry, warmup, ... the
// annotation carried would be gone after the first old-version read, and a
// write back would store the object without them.
func TestRelabelledWriteKeepsAnnotationData(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	const registry = "registry.example.com/flomesh"
	obj := relabelledV1alpha1(t, h, func(spec map[string]any) {
		spec["image"].(map[string]any)["registry"] = registry
		spec["warmup"] = map[string]any{"enable": false, "duration": "30s"}
	})
	if !strings.Contains(string(obj), registry) {
		t.Fatalf("setup: the relabelled object's annotation should carry the registry: %s", obj)
	}
	for _, v := range []string{"v1alpha1", "v1alpha2"} {
		down, msg := convertOne(t, h, group+"/"+v, obj)
		if down == nil {
			t.Fatalf("to %s: %s", v, msg)
		}
		if !strings.Contains(string(down), registry) {
			t.Errorf("read as %s, the image registry %q the annotation carried is gone (annotation overwritten)", v, registry)
		}
		up, msg := convertOne(t, h, group+"/v1alpha3", down)
		if up == nil {
			t.Fatalf("%s back to v1alpha3: %s", v, msg)
		}
		if !strings.Contains(string(up), registry) {
			t.Errorf("written back through %s, the stored object lost the image registry %q", v, registry)
		}
	}
}

// TestOldVersionViewPassesOldSchema: a valid v1alpha3 object without
// clusterSet, traffic or pluginChains (none is required in v1alpha3) is
// served in v1alpha1/v1alpha2 with those sections present (non-omitempty Go
// structs), so their required lists must be [] rather than null, which the
// apiserver drops: the view would fail the old version's own schema
// ("Required value"). An unchanged PUT would still pass thanks to CRD
// validation ratcheting, but creating the object from what was read
// (backup/restore, kubectl create -f of a `get -o yaml`) or editing inside
// such a section would be refused.
func TestOldVersionViewPassesOldSchema(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	s3 := loadSchema(t, "v1alpha3")
	for name, obj := range map[string][]byte{
		"minimal":              minimalMeshConfig,
		"without clusterSet":   presetWith(t, func(s map[string]any) { delete(s, "clusterSet") }),
		"without traffic":      presetWith(t, func(s map[string]any) { delete(s, "traffic") }),
		"without pluginChains": presetWith(t, func(s map[string]any) { delete(s, "pluginChains") }),
	} {
		stored, errs := s3.apiserverView(t, obj)
		if len(errs) != 0 {
			t.Fatalf("%s: setup: the v1alpha3 schema refuses it: %v", name, errs)
		}
		raw, _ := json.Marshal(stored)
		for _, v := range []string{"v1alpha1", "v1alpha2"} {
			down, msg := convertOne(t, h, group+"/"+v, raw)
			if down == nil {
				t.Fatalf("%s: to %s: %s", name, v, msg)
			}
			if _, errs := loadSchema(t, v).apiserverView(t, down); len(errs) != 0 {
				t.Errorf("%s: the %s view of a valid v1alpha3 object fails the %s schema: %v", name, v, v, errs)
			}
		}
	}
}
