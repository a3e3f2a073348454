package meshconfig

import (
	"encoding/json"
	"slices"
	"sort"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
)

func reviewHubSpecSchema(t *testing.T) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	crds, err := chart.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if crd.Spec.Names.Kind != Kind {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Name == V1alpha3 {
				return v.Schema.OpenAPIV3Schema.Properties["spec"]
			}
		}
	}
	t.Fatal("no v1alpha3 schema")
	return apiextensionsv1.JSONSchemaProps{}
}

// optionalPaths lists every optional property (at any depth, through
// objects only) that obj holds.
func optionalPaths(s apiextensionsv1.JSONSchemaProps, obj map[string]any, prefix []string, out *[][]string) {
	for k, v := range obj {
		ps, ok := s.Properties[k]
		if !ok {
			continue
		}
		p := append(slices.Clone(prefix), k)
		if !slices.Contains(s.Required, k) {
			*out = append(*out, p)
		}
		if m, ok := v.(map[string]any); ok {
			optionalPaths(ps, m, p, out)
		}
	}
}

// TestEveryOptionalFieldAbsent: FSM's preset as v1alpha3 with any
// one optional field (at any depth) left out, valid by the v1alpha3 rules
// and schema, read through v1alpha1/v1alpha2 and written back unchanged,
// must get neither an error nor the stored-schema warning.
func TestEveryOptionalFieldAbsent(t *testing.T) {
	base := presetWithout(t)
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		t.Fatal(err)
	}
	var paths [][]string
	optionalPaths(reviewHubSpecSchema(t), m["spec"].(map[string]any), nil, &paths)
	sort.Slice(paths, func(i, j int) bool { return slices.Compare(paths[i], paths[j]) < 0 })
	checked := 0
	for _, p := range paths {
		var c map[string]any
		_ = json.Unmarshal(base, &c)
		at := c["spec"].(map[string]any)
		for _, k := range p[:len(p)-1] {
			at = at[k].(map[string]any)
		}
		delete(at, p[len(p)-1])
		hub, _ := json.Marshal(c)
		if errs, err := storedSchemaErrors(hub); err != nil || len(errs) != 0 {
			continue
		}
		if r := Validate(V1alpha3, hub); len(r.Errors) != 0 {
			continue
		}
		checked++
		for _, version := range []string{V1alpha1, V1alpha2} {
			obj := readAs(t, version, hub)
			for name, r := range map[string]Result{"create": Validate(version, obj), "update": ValidateUpdate(version, obj, obj)} {
				if len(r.Errors) > 0 || schemaWarning(r.Warnings) != "" {
					t.Errorf("without spec.%v, read as %s and written back (%s): errors %q, warning %q", p, version, name, messages(r.Errors), schemaWarning(r.Warnings))
				}
			}
		}
	}
	t.Logf("%d of %d optional fields checked", checked, len(paths))
}
