package converter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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
