package meshconfig

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// TestDeleteSectionKeepingConverterAnnotation: a MeshConfig read
// through v1alpha1/v1alpha2 (the converter's own annotations on it) and
// written back with one spec section (or subsection) deleted, as kubectl
// edit/apply does, is a write FSM admitted. The annotation is exactly what
// the converter wrote, so a denial "must be what the converter wrote when
// this object was read" is false.
func TestDeleteSectionKeepingConverterAnnotation(t *testing.T) {
	hub := presetWithout(t)
	for _, version := range []string{V1alpha1, V1alpha2} {
		read := readAs(t, version, hub)
		var m map[string]any
		_ = json.Unmarshal(read, &m)
		spec := m["spec"].(map[string]any)
		var paths []string
		for k, v := range spec {
			paths = append(paths, k)
			if sub, ok := v.(map[string]any); ok {
				for k2 := range sub {
					paths = append(paths, k+"."+k2)
				}
			}
		}
		sort.Strings(paths)
		for _, p := range paths {
			var c map[string]any
			_ = json.Unmarshal(read, &c)
			at := c["spec"].(map[string]any)
			keys := strings.Split(p, ".")
			for _, k := range keys[:len(keys)-1] {
				at = at[k].(map[string]any)
			}
			last := keys[len(keys)-1]
			was := at[last]
			for _, how := range []string{"deleted", "emptied"} {
				if how == "deleted" {
					delete(at, last)
				} else if _, ok := was.(map[string]any); ok {
					at[last] = map[string]any{}
				} else if _, ok := was.([]any); ok {
					at[last] = []any{}
				} else {
					continue
				}
				obj, _ := json.Marshal(c)
				r := ValidateUpdate(version, obj, read)
				for _, e := range r.Errors {
					if strings.HasPrefix(e.Field, "metadata.annotations") {
						t.Errorf("%s, spec.%s %s, the converter's annotation kept: denied: %s", version, p, how, e.Error())
					}
				}
			}
		}
	}
}
