package converter

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/go-logr/logr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// v1alpha1WithHubAnnotation is the preset read as v1alpha1, its
// conversion.flomesh.io/v1alpha3-fields annotation replaced by ann.
func v1alpha1WithHubAnnotation(t *testing.T, h *Handler, ann string) []byte {
	t.Helper()
	preset, _ := json.Marshal(presetMap(t))
	down, msg := convertOne(t, h, group+"/v1alpha1", preset)
	if down == nil {
		t.Fatal(msg)
	}
	var m map[string]any
	if err := json.Unmarshal(down, &m); err != nil {
		t.Fatal(err)
	}
	m["metadata"].(map[string]any)["annotations"] = map[string]any{lossless.AnnotationV1Alpha3Fields: ann}
	obj, _ := json.Marshal(m)
	return obj
}

// TestPartialAnnotationSectionGetsSchemaDefaults: README "Up (old →
// v1alpha3): ... what it lacks gets the v1alpha3 schema defaults, so the
// result passes the v1alpha3 schema", for the fields a section the
// annotation has lacks too. The validator admits an annotation holding part
// of a section (its own error message gives {"ingress":{"type":"NodePort"}}
// as the format); the converter writes the Go struct with every field out,
// so the apiserver's defaulting never applies to them and the converter
// must: ingress.enabled true (not false), ingress.logLevel info (not "",
// which the v1alpha3 enum refuses), clusterSet.region/zone/group "default".
func TestPartialAnnotationSectionGetsSchemaDefaults(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	logLevels := []any{"trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"}
	for _, tc := range []struct {
		ann     string
		section string
		check   func(t *testing.T, s map[string]any)
	}{
		{`{"ingress":{"type":"NodePort"}}`, "ingress", func(t *testing.T, s map[string]any) {
			if s["enabled"] != true {
				t.Errorf("ingress.enabled = %v, want the v1alpha3 schema default true (a v1alpha3 write of ingress: {type: NodePort} gets it)", s["enabled"])
			}
			if !slices.Contains(logLevels, s["logLevel"]) {
				t.Errorf("ingress.logLevel = %q: the v1alpha3 CRD schema (enum %v, default info) refuses it", s["logLevel"], logLevels)
			}
		}},
		{`{"clusterSet":{"uid":"u1","name":"c1","controlPlaneUID":"cp1"}}`, "clusterSet", func(t *testing.T, s map[string]any) {
			for _, k := range []string{"region", "zone", "group"} {
				if s[k] != "default" {
					t.Errorf("clusterSet.%s = %q; the annotation lacks it, so it should get the schema default \"default\"", k, s[k])
				}
			}
		}},
	} {
		t.Run(tc.section, func(t *testing.T) {
			obj := v1alpha1WithHubAnnotation(t, h, tc.ann)
			if r := meshconfig.Validate(meshconfig.V1alpha1, obj); len(r.Errors) != 0 {
				t.Fatalf("setup: the validator refuses the annotation %s: %v", tc.ann, r.Errors)
			}
			up, msg := convertOne(t, h, group+"/v1alpha3", obj)
			if up == nil {
				t.Fatalf("conversion failed: %s", msg)
			}
			var hub map[string]any
			if err := json.Unmarshal(up, &hub); err != nil {
				t.Fatal(err)
			}
			s, _ := hub["spec"].(map[string]any)[tc.section].(map[string]any)
			b, _ := json.Marshal(s)
			t.Logf("annotation %s (admitted by the validator) → v1alpha3 spec.%s = %s", tc.ann, tc.section, b)
			tc.check(t, s)
		})
	}
}
