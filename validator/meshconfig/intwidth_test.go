package meshconfig

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// integerField is an integer property of the served CRD schema: path as in
// the schema ("[]" for list items), the Go type the converter decodes it
// into, and the schema's own bounds.
type integerField struct {
	path     string
	goKind   reflect.Kind
	min, max *float64
}

// TestIntegerFieldsFitTheirGoTypes walks every integer property of every
// version of the CRD we install and, where the version's Go type is
// narrower than what the schema lets the apiserver store, requires the
// validator to deny both values just outside the Go type's range, naming the
// field and the value. Such a value admitted would be stored and then break
// every read of the object in another version (the converter decodes into
// the Go types). int/int64 fields need nothing: the schema's "integer"
// refuses what int64 cannot hold.
func TestIntegerFieldsFitTheirGoTypes(t *testing.T) {
	specs := map[string]reflect.Type{
		V1alpha1: reflect.TypeFor[v1alpha1.MeshConfigSpec](),
		V1alpha2: reflect.TypeFor[v1alpha2.MeshConfigSpec](),
		V1alpha3: reflect.TypeFor[v1alpha3.MeshConfigSpec](),
	}
	narrow := 0
	for _, version := range Versions {
		fields := crdIntegerFields(t, version, specs[version])
		if len(fields) < 10 {
			t.Fatalf("%s: found only %d integer fields in the CRD; is the walk broken?", version, len(fields))
		}
		for _, f := range fields {
			lo, hi, ok := intRange(f.goKind)
			if !ok {
				continue // int, int64: as wide as the schema
			}
			if f.min != nil && *f.min >= float64(lo) && f.max != nil && *f.max <= float64(hi) {
				continue // the schema itself keeps it in range
			}
			narrow++
			for _, v := range []int64{hi + 1, lo - 1} {
				t.Run(fmt.Sprintf("%s %s=%d", version, f.path, v), func(t *testing.T) {
					obj, errPath := buildAt(t, preset(t), f.path, v)
					errs := Validate(version, obj).Errors
					if !slices.ContainsFunc(errs, func(e *field.Error) bool {
						return e.Field == errPath && fmt.Sprint(e.BadValue) == fmt.Sprint(v)
					}) {
						t.Errorf("%s (Go %s) = %d admitted; errors: %v", errPath, f.goKind, v, errs)
					}
				})
			}
		}
	}
	if narrow == 0 {
		t.Fatal("no integer field narrower than the schema found; is the walk broken?")
	}
}

// intRange is the range of a Go integer kind narrower than int64.
func intRange(k reflect.Kind) (lo, hi int64, ok bool) {
	switch k {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8, true
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16, true
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32, true
	case reflect.Uint8:
		return 0, math.MaxUint8, true
	case reflect.Uint16:
		return 0, math.MaxUint16, true
	case reflect.Uint32:
		return 0, math.MaxUint32, true
	}
	return 0, 0, false
}

func crdIntegerFields(t *testing.T, version string, spec reflect.Type) []integerField {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "charts", "fsm-webhooks", "crds", "config.flomesh.io_meshconfigs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apixv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		var out []integerField
		var walk func(s apixv1.JSONSchemaProps, path string, goType reflect.Type)
		walk = func(s apixv1.JSONSchemaProps, path string, goType reflect.Type) {
			for goType.Kind() == reflect.Pointer {
				goType = goType.Elem()
			}
			switch {
			case s.Type == "integer":
				out = append(out, integerField{path: path, goKind: goType.Kind(), min: s.Minimum, max: s.Maximum})
			case s.Type == "array" && s.Items != nil && s.Items.Schema != nil:
				walk(*s.Items.Schema, path+"[]", goType.Elem())
			case s.Type == "object":
				for name, prop := range s.Properties {
					if ft, ok := goField(goType, name); ok {
						walk(prop, path+"."+name, ft)
					} else if goType.Kind() == reflect.Struct && !strings.HasPrefix(name, "DO_NOT_EDIT") {
						t.Errorf("%s: schema property %s.%s has no Go field in %s", version, path, name, goType)
					}
				}
			}
		}
		walk(v.Schema.OpenAPIV3Schema.Properties["spec"], "spec", spec)
		slices.SortFunc(out, func(a, b integerField) int { return strings.Compare(a.path, b.path) })
		return out
	}
	t.Fatalf("the CRD has no version %s", version)
	return nil
}

// goField finds the field of struct t named name in JSON (embedded structs
// included).
func goField(t reflect.Type, name string) (reflect.Type, bool) {
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && (tag == "" || f.Tag.Get("json") == ",inline") {
			if ft, ok := goField(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

// buildAt writes v at a schema path into base ("[]" makes a one-element
// list) and returns the JSON and the field path of the value.
func buildAt(t *testing.T, base map[string]any, path string, v int64) ([]byte, string) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(path, "spec."), ".")
	node := base["spec"].(map[string]any)
	for i, p := range parts {
		name, list := strings.CutSuffix(p, "[]")
		last := i == len(parts)-1
		switch {
		case last && list:
			node[name] = []any{v}
		case last:
			node[name] = v
		case list:
			child := map[string]any{}
			node[name] = []any{child}
			node = child
		default:
			child, ok := node[name].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[name] = child
			}
			node = child
		}
	}
	return build(t, base), strings.ReplaceAll(path, "[]", "[0]")
}
