package meshconfig

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

const storedWarning = "the config.flomesh.io/v1alpha3 object this write is stored as fails the v1alpha3 schema"

// presetWithout is FSM's preset with the named spec sections removed, as
// v1alpha3 JSON; the v1alpha3 schema accepts it (checked).
func presetWithout(t *testing.T, sections ...string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(build(t, preset(t)), &m); err != nil {
		t.Fatal(err)
	}
	for _, s := range sections {
		delete(m["spec"].(map[string]any), s)
	}
	m["apiVersion"], m["kind"] = Group+"/"+V1alpha3, Kind
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if errs, err := storedSchemaErrors(out); err != nil || len(errs) != 0 {
		t.Fatalf("setup: the v1alpha3 schema refuses the preset without %v: %v %v", sections, errs, err)
	}
	return out
}

// readAs is hub read through version, as the converter serves it.
func readAs(t *testing.T, version string, hub []byte) []byte {
	t.Helper()
	down := NewSpoke(version)
	if err := convert.FromHub(hub, func() conversion.Hub { return &v1alpha3.MeshConfig{} }, down); err != nil {
		t.Fatal(err)
	}
	return asVersion(t, version, down)
}

// edit sets spec values (dotted path under spec → JSON value) in obj.
func edit(t *testing.T, obj []byte, sets map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	for path, v := range sets {
		keys := strings.Split(path, ".")
		at := m["spec"].(map[string]any)
		for _, k := range keys[:len(keys)-1] {
			next, ok := at[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				at[k] = next
			}
			at = next
		}
		at[keys[len(keys)-1]] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// schemaWarning is the stored-schema warnings (one per error), joined.
func schemaWarning(warnings []string) string {
	var ws []string
	for _, w := range warnings {
		if strings.HasPrefix(w, storedWarning) {
			ws = append(ws, w)
		}
	}
	return strings.Join(ws, "\n")
}

// TestStoredSchema: an old version's write is checked as the v1alpha3
// object it is stored as against the v1alpha3 schema, which the apiserver
// does not apply to a converted object. Its own problems are a warning
// (FSM admitted such writes); an update warns only of those it brings; one
// a conversion annotation brings denies, at the annotation.
func TestStoredSchema(t *testing.T) {
	noTraffic := presetWithout(t, "traffic")
	trafficEdit := map[string]any{
		"traffic.enableEgress": true, "traffic.inboundPortExclusionList": []any{},
		"traffic.outboundIPRangeExclusionList": []any{}, "traffic.outboundPortExclusionList": []any{},
	}
	for _, tc := range []struct {
		name     string
		version  string
		obj, old []byte
		// warn: substrings of the one schema warning ("" none); deny: of
		// the one error ("" none).
		warn []string
		// unwarn: what the warning must not hold.
		unwarn []string
		deny   string
	}{{
		name: "FSM's preset read as v1alpha1, written back", version: V1alpha1,
		obj: readAs(t, V1alpha1, presetWithout(t)),
	}, {
		name: "FSM's preset read as v1alpha2, written back", version: V1alpha2,
		obj: readAs(t, V1alpha2, presetWithout(t)),
	}, {
		name: "an absent section read as v1alpha1, written back", version: V1alpha1,
		obj: readAs(t, V1alpha1, noTraffic), old: readAs(t, V1alpha1, noTraffic),
	}, {
		name: "an absent section edited through v1alpha1", version: V1alpha1,
		obj: edit(t, readAs(t, V1alpha1, noTraffic), trafficEdit), old: readAs(t, V1alpha1, noTraffic),
		warn: []string{
			`spec.traffic.interceptionMode: Unsupported value: "": supported values: "NodeLevel", "PodLevel"`,
			`spec.traffic.serviceAccessMode: Unsupported value: "": supported values: "ip", "domain", "mixed"`,
			"; set it, or write it as v1alpha3",
		},
	}, {
		name: "the same edit, complete", version: V1alpha1,
		obj: edit(t, readAs(t, V1alpha1, noTraffic), map[string]any{
			"traffic.enableEgress": true, "traffic.inboundPortExclusionList": []any{},
			"traffic.outboundIPRangeExclusionList": []any{}, "traffic.outboundPortExclusionList": []any{},
			"traffic.interceptionMode": "PodLevel", "traffic.serviceAccessMode": "mixed",
		}),
		old: readAs(t, V1alpha1, noTraffic),
	}, {
		name: "an update of an object already stored so warns of nothing new", version: V1alpha1,
		obj: edit(t, edit(t, readAs(t, V1alpha1, noTraffic), trafficEdit), map[string]any{"sidecar.logLevel": "debug"}),
		old: edit(t, readAs(t, V1alpha1, noTraffic), trafficEdit),
	}, {
		// The lists v1alpha3 requires are stored as [] (spoke.NonNil); the
		// enums a sparse write leaves empty still fail the v1alpha3 schema.
		name: "a sparse v1alpha2 create", version: V1alpha2,
		obj:    []byte(`{"apiVersion":"config.flomesh.io/v1alpha2","kind":"MeshConfig","metadata":{"name":"m"},"spec":{"sidecar":{"logLevel":"debug"}}}`),
		warn:   []string{"spec.traffic.interceptionMode: Unsupported value", "spec.traffic.serviceAccessMode: Unsupported value"},
		unwarn: []string{"Required value"},
	}, {
		name: "a null put back by a crafted exact-JSON annotation", version: V1alpha1,
		obj: objectJSON(t, V1alpha1, nil, map[string]string{
			lossless.AnnotationV1Alpha3JSON: `[{"path":["spec","traffic","inboundPortExclusionList"],"was":null,"got":[]}]`}),
		deny: `metadata.annotations[conversion.flomesh.io/v1alpha3-json]: Invalid value: ` +
			`"[{\"path\":[\"spec\",\"traffic\",\"inboundPortExclusionList\"],\"was\":null,\"got\":[]}]": must be what the converter wrote when this object was read, or be removed: ` +
			`with annotations conversion.flomesh.io/v1alpha3-fields and conversion.flomesh.io/v1alpha3-json applied, the v1alpha3 object this write is stored as fails the v1alpha3 schema: spec.traffic.inboundPortExclusionList: Required value`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var r Result
			if tc.old != nil {
				r = ValidateUpdate(tc.version, tc.obj, tc.old)
			} else {
				r = Validate(tc.version, tc.obj)
			}
			w := schemaWarning(r.Warnings)
			switch {
			case len(tc.warn) == 0 && w != "":
				t.Errorf("warned: %q", w)
			case len(tc.warn) > 0 && w == "":
				t.Errorf("no warning starting %q in %q", storedWarning, r.Warnings)
			}
			for _, s := range tc.warn {
				if w != "" && !strings.Contains(w, s) {
					t.Errorf("warning %q lacks %q", w, s)
				}
			}
			for _, s := range tc.unwarn {
				if strings.Contains(w, s) {
					t.Errorf("warning %q has %q", w, s)
				}
			}
			got := messages(r.Errors)
			switch {
			case tc.deny == "" && len(got) > 0:
				t.Errorf("denied: %q", got)
			case tc.deny != "" && (len(got) != 1 || got[0] != tc.deny):
				t.Errorf("errors %q, want exactly\n%q", got, tc.deny)
			}
		})
	}
}

// TestStoredSchemaKeepsValidObjectsQuiet: every optional section of FSM's
// preset left out in turn, a v1alpha3 object the schema accepts, read
// through v1alpha1 and v1alpha2 and written back unchanged, gets neither an
// error nor the schema warning: the converter's annotations give back the
// object it was read from.
func TestStoredSchemaKeepsValidObjectsQuiet(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(build(t, preset(t)), &m); err != nil {
		t.Fatal(err)
	}
	required := map[string]bool{"connector": true, "image": true, "misc": true}
	for section := range m["spec"].(map[string]any) {
		if required[section] {
			continue
		}
		hub := presetWithout(t, section)
		for _, version := range []string{V1alpha1, V1alpha2} {
			obj := readAs(t, version, hub)
			r := ValidateUpdate(version, obj, obj)
			if len(r.Errors) > 0 || schemaWarning(r.Warnings) != "" {
				t.Errorf("without spec.%s, read as %s and written back: errors %q, warnings %q", section, version, messages(r.Errors), r.Warnings)
			}
		}
	}
}

func TestSchemaPath(t *testing.T) {
	for name, want := range map[string]string{
		"spec":                                 "spec",
		"spec.traffic.interceptionMode":        "spec.traffic.interceptionMode",
		"spec.sidecar.localDNSProxy.db[2].ips": "spec.sidecar.localDNSProxy.db[2].ips",
		"spec.xs[1][3].name":                   "spec.xs[1][3].name",
		"spec.m[key]":                          "spec.m[key]",
	} {
		if got := schemaPath(name).String(); got != want {
			t.Errorf("schemaPath(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestValueAt(t *testing.T) {
	obj := map[string]any{"spec": map[string]any{
		"limits": map[string]any{"example.com/gpu": 1.5, "cpu": "1"},
		"xs":     []any{map[string]any{"name": "a"}, []any{int64(7)}},
	}}
	for name, want := range map[string]any{
		"spec.limits.example.com/gpu": 1.5,
		"spec.limits.cpu":             "1",
		"spec.xs[0].name":             "a",
		"spec.xs[1][0]":               int64(7),
	} {
		if got, ok := valueAt(obj, name); !ok || got != want {
			t.Errorf("valueAt(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"spec.nope", "spec.xs[2].name", "spec.limits.cpu.x"} {
		if got, ok := valueAt(obj, name); ok {
			t.Errorf("valueAt(%q) = %v, want none", name, got)
		}
	}
}
