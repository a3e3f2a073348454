package config_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// fsmSchemaAllowed lists the only places where our MeshConfig schema may be
// stricter than, or differ from, FSM v1.5.1's, with the reason. Key:
// "<version><path> <attribute>" as TestSchemaAcceptsWhatFSMAccepts reports
// it. It is empty: an object FSM's apiserver stores, ours stores unchanged.
// Stricter checks belong in the validator webhook (validator/meshconfig),
// which names the field and ratchets on UPDATE.
//
// Looser than FSM (compatible, so never reported; apis/config/README.md has
// the table): image.name/digest and localDNSProxy wildcard.los/ips, db[].ips
// are optional; the CRD's deprecationWarning text names the replacement
// version. The Go types hold ports as int32 (FSM: int16, which cannot hold
// 32768-65535) under the same schema.
var fsmSchemaAllowed = map[string]string{}

// fsmReferenceDir is FSM v1.5.1's recorded corpus, beside the checkout (CI
// clones the repository with shared/ next to it). Missing is a failure, never
// a skip: without it this test would prove nothing.
func fsmReferenceDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "..", "shared", "fsm-reference")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("FSM reference corpus missing (expected at <repo root>/../shared/fsm-reference): %v", err)
	}
	return dir
}

func loadCRD(t testing.TB, path string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return crd
}

// TestSchemaAcceptsWhatFSMAccepts compares our generated CRD with FSM's,
// version by version and property by property along every path of FSM's
// schema.
func TestSchemaAcceptsWhatFSMAccepts(t *testing.T) {
	fsm := loadCRD(t, filepath.Join(fsmReferenceDir(t), "crds", "config.flomesh.io_meshconfigs.yaml"))
	ours := loadCRD(t, filepath.Join(testenv.MeshConfigCRDs(), "config.flomesh.io_meshconfigs.yaml"))

	var diffs []schemaDiff
	add := func(where, attr, fsmV, ourV string) {
		diffs = append(diffs, schemaDiff{where: where, attr: attr, fsm: fsmV, ours: ourV})
	}
	if fsm.Spec.Group != ours.Spec.Group || fsm.Name != ours.Name {
		add("crd", "group/name", fsm.Name, ours.Name)
	}
	if fsm.Spec.Scope != ours.Spec.Scope {
		add("crd", "scope", string(fsm.Spec.Scope), string(ours.Spec.Scope))
	}
	if !reflect.DeepEqual(fsm.Spec.Names, ours.Spec.Names) {
		add("crd", "names", fmt.Sprint(fsm.Spec.Names), fmt.Sprint(ours.Spec.Names))
	}
	for _, fv := range fsm.Spec.Versions {
		i := slices.IndexFunc(ours.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool { return v.Name == fv.Name })
		if i < 0 {
			add(fv.Name, "version", "served", "absent")
			continue
		}
		ov := ours.Spec.Versions[i]
		for _, c := range []struct {
			attr     string
			fsm, our bool
		}{{"served", fv.Served, ov.Served}, {"storage", fv.Storage, ov.Storage}, {"deprecated", fv.Deprecated, ov.Deprecated}} {
			if c.fsm != c.our {
				add(fv.Name, c.attr, fmt.Sprint(c.fsm), fmt.Sprint(c.our))
			}
		}
		if fv.Schema == nil || ov.Schema == nil {
			t.Fatalf("%s: a CRD without a schema (FSM %v, ours %v)", fv.Name, fv.Schema != nil, ov.Schema != nil)
		}
		compareSchema(fv.Name, fv.Schema.OpenAPIV3Schema, ov.Schema.OpenAPIV3Schema, add)
	}

	seen := map[string]bool{}
	for _, d := range diffs {
		key := d.key()
		seen[key] = true
		if _, ok := fsmSchemaAllowed[key]; !ok {
			t.Errorf("%s: FSM %s, ours %s", key, d.fsm, d.ours)
		}
	}
	for key := range fsmSchemaAllowed {
		if !seen[key] {
			t.Errorf("allowlist entry %q matches no difference: remove it", key)
		}
	}
}

type schemaDiff struct{ where, attr, fsm, ours string }

func (d schemaDiff) key() string { return d.where + " " + d.attr }

// compareSchema reports every way in which ours may refuse or change an
// object that fsm accepts, at path and below along fsm's properties. A field
// only ours has cannot appear in an object FSM stored (FSM's apiserver prunes
// it), so only a new required or defaulted one is reported.
func compareSchema(path string, fsm, ours *apiextensionsv1.JSONSchemaProps, add func(where, attr, fsmV, ourV string)) {
	if ours == nil {
		add(path, "property", "present", "absent (pruned)")
		return
	}
	// Different values: type, format, default, nullable, x-kubernetes-*.
	same := func(attr string, f, o any) {
		if !reflect.DeepEqual(f, o) {
			add(path, attr, show(f), show(o))
		}
	}
	same("type", fsm.Type, ours.Type)
	same("format", fsm.Format, ours.Format)
	same("default", jsonOf(fsm.Default), jsonOf(ours.Default))
	same("nullable", fsm.Nullable, ours.Nullable)
	same("x-kubernetes-preserve-unknown-fields", fsm.XPreserveUnknownFields != nil && *fsm.XPreserveUnknownFields,
		ours.XPreserveUnknownFields != nil && *ours.XPreserveUnknownFields)
	same("x-kubernetes-int-or-string", fsm.XIntOrString, ours.XIntOrString)
	same("x-kubernetes-embedded-resource", fsm.XEmbeddedResource, ours.XEmbeddedResource)
	same("x-kubernetes-list-type", fsm.XListType, ours.XListType)
	same("x-kubernetes-list-map-keys", fsm.XListMapKeys, ours.XListMapKeys)
	same("x-kubernetes-map-type", fsm.XMapType, ours.XMapType)
	same("x-kubernetes-validations", fsm.XValidations, ours.XValidations)
	same("pattern", fsm.Pattern, ours.Pattern)
	same("allOf/anyOf/oneOf/not", []any{fsm.AllOf, fsm.AnyOf, fsm.OneOf, fsm.Not}, []any{ours.AllOf, ours.AnyOf, ours.OneOf, ours.Not})

	// Enum: a value FSM allows that ours lacks, or an enum where FSM has none.
	if len(ours.Enum) > 0 {
		if len(fsm.Enum) == 0 {
			add(path, "enum", "none", enumOf(ours.Enum))
		} else if missing := enumMinus(fsm.Enum, ours.Enum); missing != "" {
			add(path, "enum", enumOf(fsm.Enum), enumOf(ours.Enum)+" (lacks "+missing+")")
		}
	}

	// Bounds: ours may only be absent or wider.
	lower := func(attr string, f, o *float64, fExcl, oExcl bool) {
		if o != nil && (f == nil || *o > *f || (*o == *f && oExcl && !fExcl)) {
			add(path, attr, bound(f, fExcl), bound(o, oExcl))
		}
	}
	upper := func(attr string, f, o *float64, fExcl, oExcl bool) {
		if o != nil && (f == nil || *o < *f || (*o == *f && oExcl && !fExcl)) {
			add(path, attr, bound(f, fExcl), bound(o, oExcl))
		}
	}
	lower("minimum", fsm.Minimum, ours.Minimum, fsm.ExclusiveMinimum, ours.ExclusiveMinimum)
	upper("maximum", fsm.Maximum, ours.Maximum, fsm.ExclusiveMaximum, ours.ExclusiveMaximum)
	lower("minLength", float(fsm.MinLength), float(ours.MinLength), false, false)
	upper("maxLength", float(fsm.MaxLength), float(ours.MaxLength), false, false)
	lower("minItems", float(fsm.MinItems), float(ours.MinItems), false, false)
	upper("maxItems", float(fsm.MaxItems), float(ours.MaxItems), false, false)
	lower("minProperties", float(fsm.MinProperties), float(ours.MinProperties), false, false)
	upper("maxProperties", float(fsm.MaxProperties), float(ours.MaxProperties), false, false)
	if ours.MultipleOf != nil && !reflect.DeepEqual(fsm.MultipleOf, ours.MultipleOf) {
		add(path, "multipleOf", show(fsm.MultipleOf), show(ours.MultipleOf))
	}
	if ours.UniqueItems && !fsm.UniqueItems {
		add(path, "uniqueItems", "false", "true")
	}

	// Required: only what FSM requires.
	for _, r := range ours.Required {
		if !slices.Contains(fsm.Required, r) {
			add(path+"."+r, "required", "optional", "required")
		}
	}

	// Properties, items, additionalProperties.
	for _, name := range sortedKeys(fsm.Properties) {
		f := fsm.Properties[name]
		var o *apiextensionsv1.JSONSchemaProps
		if p, ok := ours.Properties[name]; ok {
			o = &p
		} else if ours.AdditionalProperties != nil && ours.AdditionalProperties.Schema != nil {
			o = ours.AdditionalProperties.Schema
		} else if ours.XPreserveUnknownFields != nil && *ours.XPreserveUnknownFields {
			continue // kept as is
		}
		compareSchema(path+"."+name, &f, o, add)
	}
	for _, name := range sortedKeys(ours.Properties) {
		if _, ok := fsm.Properties[name]; !ok && ours.Properties[name].Default != nil {
			add(path+"."+name, "default", "no such field", jsonOf(ours.Properties[name].Default))
		}
	}
	if fsm.Items != nil && fsm.Items.Schema != nil {
		var o *apiextensionsv1.JSONSchemaProps
		if ours.Items != nil {
			o = ours.Items.Schema
		}
		compareSchema(path+"[]", fsm.Items.Schema, o, add)
	}
	if fsm.AdditionalProperties != nil {
		fa, oa := fsm.AdditionalProperties, ours.AdditionalProperties
		switch {
		case oa == nil:
			add(path+"{}", "additionalProperties", "allowed", "absent")
		case fa.Schema != nil:
			compareSchema(path+"{}", fa.Schema, oa.Schema, add)
		case fa.Allows && oa.Schema == nil && !oa.Allows:
			add(path+"{}", "additionalProperties", "true", "false")
		}
	}
}

func float(i *int64) *float64 {
	if i == nil {
		return nil
	}
	f := float64(*i)
	return &f
}

func bound(f *float64, excl bool) string {
	switch {
	case f == nil:
		return "none"
	case excl:
		return fmt.Sprintf("%v (exclusive)", *f)
	}
	return fmt.Sprint(*f)
}

func jsonOf(j *apiextensionsv1.JSON) string {
	if j == nil {
		return ""
	}
	return string(j.Raw)
}

func show(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return "none"
		}
		return x
	case *float64:
		return bound(x, false)
	}
	if reflect.ValueOf(v).IsZero() {
		return "none"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func enumOf(e []apiextensionsv1.JSON) string {
	s := make([]string, len(e))
	for i := range e {
		s[i] = string(e[i].Raw)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// enumMinus lists the values of a that b lacks.
func enumMinus(a, b []apiextensionsv1.JSON) string {
	var missing []string
	for _, v := range a {
		if !slices.ContainsFunc(b, func(w apiextensionsv1.JSON) bool { return string(w.Raw) == string(v.Raw) }) {
			missing = append(missing, string(v.Raw))
		}
	}
	return strings.Join(missing, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestCompareSchemaCatches: every kind of stricter or different schema is
// reported, and looser ones are not.
func TestCompareSchemaCatches(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int64) *int64 { return &v }
	raw := func(s string) apiextensionsv1.JSON { return apiextensionsv1.JSON{Raw: []byte(s)} }
	base := func() *apiextensionsv1.JSONSchemaProps {
		return &apiextensionsv1.JSONSchemaProps{Type: "object", Required: []string{"a"}, Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"a":    {Type: "integer", Minimum: f(0), Maximum: f(100)},
			"n":    {Type: "number"},
			"s":    {Type: "string", Enum: []apiextensionsv1.JSON{raw(`"x"`), raw(`"y"`)}, MaxLength: i(10), Default: &apiextensionsv1.JSON{Raw: []byte(`"x"`)}},
			"free": {Type: "string"},
			"l":    {Type: "array", MaxItems: i(5), Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{Type: "integer"}}},
			"m":    {Type: "object", XPreserveUnknownFields: ptr.To(true), Nullable: true},
			"ios":  {XIntOrString: true},
		}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(o *apiextensionsv1.JSONSchemaProps)
		want   []string // keys; empty = compatible
	}{
		{"identical", func(*apiextensionsv1.JSONSchemaProps) {}, nil},
		{"added minimum", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "free", func(p *apiextensionsv1.JSONSchemaProps) { p.MinLength = i(1) })
		}, []string{"v.free minLength"}},
		{"narrower maximum", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "a", func(p *apiextensionsv1.JSONSchemaProps) { p.Maximum = f(50) })
		}, []string{"v.a maximum"}},
		{"exclusive bound", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "a", func(p *apiextensionsv1.JSONSchemaProps) { p.ExclusiveMinimum = true })
		}, []string{"v.a minimum"}},
		{"narrower type", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "n", func(p *apiextensionsv1.JSONSchemaProps) { p.Type, p.Format = "integer", "int32" })
		}, []string{"v.n format", "v.n type"}},
		{"removed enum value", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "s", func(p *apiextensionsv1.JSONSchemaProps) { p.Enum = p.Enum[:1] })
		}, []string{"v.s enum"}},
		{"new enum", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "free", func(p *apiextensionsv1.JSONSchemaProps) { p.Enum = []apiextensionsv1.JSON{raw(`"x"`)} })
		}, []string{"v.free enum"}},
		{"new required", func(o *apiextensionsv1.JSONSchemaProps) { o.Required = append(o.Required, "free") }, []string{"v.free required"}},
		{"missing property", func(o *apiextensionsv1.JSONSchemaProps) { delete(o.Properties, "free") }, []string{"v.free property"}},
		{"other default", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "s", func(p *apiextensionsv1.JSONSchemaProps) { p.Default = &apiextensionsv1.JSON{Raw: []byte(`"y"`)} })
		}, []string{"v.s default"}},
		{"default on a field FSM lacks", func(o *apiextensionsv1.JSONSchemaProps) {
			o.Properties["extra"] = apiextensionsv1.JSONSchemaProps{Type: "string", Default: &apiextensionsv1.JSON{Raw: []byte(`"z"`)}}
		}, []string{"v.extra default"}},
		{"not nullable, pruned", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "m", func(p *apiextensionsv1.JSONSchemaProps) { p.Nullable, p.XPreserveUnknownFields = false, nil })
		}, []string{"v.m nullable", "v.m x-kubernetes-preserve-unknown-fields"}},
		{"int-or-string lost", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "ios", func(p *apiextensionsv1.JSONSchemaProps) { p.XIntOrString, p.Type = false, "integer" })
		}, []string{"v.ios type", "v.ios x-kubernetes-int-or-string"}},
		{"CEL rule", func(o *apiextensionsv1.JSONSchemaProps) {
			o.XValidations = apiextensionsv1.ValidationRules{{Rule: "self.a < 5"}}
		}, []string{"v x-kubernetes-validations"}},
		{"pattern", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "free", func(p *apiextensionsv1.JSONSchemaProps) { p.Pattern = "^a" })
		}, []string{"v.free pattern"}},
		{"item bound", func(o *apiextensionsv1.JSONSchemaProps) {
			setProp(o, "l", func(p *apiextensionsv1.JSONSchemaProps) { p.Items.Schema.Minimum = f(1); p.MaxItems = i(4) })
		}, []string{"v.l maxItems", "v.l[] minimum"}},
		{"looser: bounds, enum, required removed; enum value and field added", func(o *apiextensionsv1.JSONSchemaProps) {
			o.Required = nil
			o.Properties["extra"] = apiextensionsv1.JSONSchemaProps{Type: "string"}
			setProp(o, "a", func(p *apiextensionsv1.JSONSchemaProps) { p.Minimum, p.Maximum = nil, f(1000) })
			setProp(o, "s", func(p *apiextensionsv1.JSONSchemaProps) { p.Enum, p.MaxLength = append(p.Enum, raw(`"z"`)), nil })
			setProp(o, "l", func(p *apiextensionsv1.JSONSchemaProps) { p.MaxItems = nil })
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours := base()
			tc.mutate(ours)
			var got []string
			compareSchema("v", base(), ours, func(where, attr, _, _ string) { got = append(got, where+" "+attr) })
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("reported %q, want %q", got, tc.want)
			}
		})
	}
}

func setProp(o *apiextensionsv1.JSONSchemaProps, name string, edit func(*apiextensionsv1.JSONSchemaProps)) {
	p := o.Properties[name]
	edit(&p)
	o.Properties[name] = p
}
