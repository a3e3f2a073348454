package meshconfig

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/conversion"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

const (
	hubAnn    = "metadata.annotations[" + lossless.AnnotationV1Alpha3Fields + "]"
	legacyAnn = "metadata.annotations[" + lossless.AnnotationV1Alpha2Fields + "]"
	exactAnn  = "metadata.annotations[" + lossless.AnnotationV1Alpha3JSON + "]"

	badLegacyImage = legacyAnn + `.sidecar.initContainerImage: Invalid value: "Bad Image": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format: repository name (library/Bad Image) must be lowercase`
)

// presetHub reads the preset as a typed v1alpha3 object.
func presetHub(t testing.TB) *v1alpha3.MeshConfig {
	t.Helper()
	var hub v1alpha3.MeshConfig
	if err := yaml.Unmarshal(build(t, preset(t)), &hub); err != nil {
		t.Fatal(err)
	}
	return &hub
}

// objectJSON is the preset as the apiserver sends it to the webhook in
// version: converted from the hub (edited by edit) by the converter's own
// code, then annotations (key → value) set, as a client may write them.
func objectJSON(t testing.TB, version string, edit func(*v1alpha3.MeshConfig), annotations map[string]string) []byte {
	t.Helper()
	hub := presetHub(t)
	if edit != nil {
		edit(hub)
	}
	var obj interface {
		SetAnnotations(map[string]string)
		GetAnnotations() map[string]string
	} = hub
	if version != V1alpha3 {
		s := NewSpoke(version)
		if err := s.ConvertFrom(conversion.Hub(hub)); err != nil {
			t.Fatal(err)
		}
		obj = s
	}
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	for k, v := range annotations {
		a[k] = v
	}
	obj.SetAnnotations(a)
	return asVersion(t, version, obj)
}

// TestConversionAnnotations: a write through v1alpha1/v1alpha2 is checked as
// the v1alpha3 object it is stored as (the converter restores
// conversion.flomesh.io/v1alpha3-fields into it), and a v1alpha3 write's
// conversion.flomesh.io/v1alpha2-fields (what reads in the old versions show)
// by the old versions' rules. Errors name the value's place in the
// annotation.
func TestConversionAnnotations(t *testing.T) {
	v3 := func(s string) map[string]string { return map[string]string{lossless.AnnotationV1Alpha3Fields: s} }
	v2 := func(s string) map[string]string { return map[string]string{lossless.AnnotationV1Alpha2Fields: s} }
	exact := func(s string) map[string]string { return map[string]string{lossless.AnnotationV1Alpha3JSON: s} }
	cases := []struct {
		name        string
		version     string
		edit        func(*v1alpha3.MeshConfig)
		annotations map[string]string
		want        []string
	}{
		{name: "v1alpha1: converter-written annotation of a valid object", version: V1alpha1, edit: func(h *v1alpha3.MeshConfig) {
			h.Spec.Traffic.OutboundIPRangeInclusionList = []string{"10.0.0.0/8"}
			h.Spec.Traffic.NetworkInterfaceExclusionList = []string{"eth1"}
			h.Spec.Sidecar.TLSMinProtocolVersion = "TLSv1_2"
		}},
		{name: "v1alpha2: converter-written annotation of a valid object", version: V1alpha2, edit: func(h *v1alpha3.MeshConfig) {
			h.Spec.Image.PullPolicy = "Always"
			h.Spec.RepoServer.Port = 6060
		}},
		{name: "v1alpha1: inclusion and interface lists only the annotation holds", version: V1alpha1,
			annotations: v3(`{"traffic":{"outboundIPRangeInclusionList":["fd00::/8"],"networkInterfaceExclusionList":["eth0$(id)"]}}`), want: []string{
				hubAnn + `.traffic.outboundIPRangeInclusionList[0]: Invalid value: "fd00::/8": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted (stored as spec.traffic.outboundIPRangeInclusionList[0] in v1alpha3)`,
				hubAnn + `.traffic.networkInterfaceExclusionList[0]: Invalid value: "eth0$(id)": ` + ifNameRule + `contains '$' (stored as spec.traffic.networkInterfaceExclusionList[0] in v1alpha3)`}},
		{name: "v1alpha2: v1alpha3-only sections", version: V1alpha2,
			annotations: v3(`{"ingress":{"enabled":true,"namespaced":false,"type":"Bogus","logLevel":"info","http":{"enabled":true,"bind":80,"listen":70000,"nodePort":30508}},"image":{"registry":"flomesh","tag":"latest","pullPolicy":"Sometimes"}}`), want: []string{
				hubAnn + `.ingress.type: Unsupported value: "Bogus": supported values: "LoadBalancer", "NodePort" (stored as spec.ingress.type in v1alpha3)`,
				hubAnn + `.ingress.http.listen: Invalid value: 70000: should be less than or equal to 65535 (stored as spec.ingress.http.listen in v1alpha3)`,
				hubAnn + `.image.pullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never" (stored as spec.image.pullPolicy in v1alpha3)`}},
		{name: "v1alpha1: a required field the annotation leaves out", version: V1alpha1,
			annotations: v3(`{"sidecar":{"localDNSProxy":{"enable":true,"wildcard":{"enable":true,"los":[],"ips":[{}]}}}}`), want: []string{
				hubAnn + `.sidecar.localDNSProxy.wildcard.ips[0].ipv4: Required value: an IPv4 address such as 127.0.0.2, or an ipv6 for an entry that answers AAAA only (stored as spec.sidecar.localDNSProxy.wildcard.ips[0].ipv4 in v1alpha3)`}},
		// Stored with ipv4 "", which FSM's CRD admits and FSM serves as
		// AAAA only.
		{name: "v1alpha1: an IPv6-only entry the annotation holds", version: V1alpha1,
			annotations: v3(`{"sidecar":{"localDNSProxy":{"enable":true,"wildcard":{"enable":true,"los":[],"ips":[{"ipv6":"fd00::1"}]}}}}`)},
		{name: "v1alpha1: inclusion in the annotation inside the object's exclusion", version: V1alpha1,
			edit:        func(h *v1alpha3.MeshConfig) { h.Spec.Traffic.OutboundIPRangeExclusionList = []string{"10.0.0.0/8"} },
			annotations: v3(`{"traffic":{"outboundIPRangeInclusionList":["10.1.0.0/16"]}}`), want: []string{
				hubAnn + `.traffic.outboundIPRangeInclusionList[0]: Invalid value: "10.1.0.0/16": overlaps spec.traffic.outboundIPRangeExclusionList[0] ("10.0.0.0/8"): exclusion wins, so this range is never intercepted (stored as spec.traffic.outboundIPRangeInclusionList[0] in v1alpha3)`}},
		{name: "v1alpha1: a sampledFraction string the number cannot hold", version: V1alpha1,
			edit:        func(h *v1alpha3.MeshConfig) { h.Spec.Observability.Tracing.SampledFraction = nil },
			annotations: v3(`{"observability":{"tracing":{"sampledFraction":"high"},"remoteLogging":{}}}`), want: []string{
				hubAnn + `.observability.tracing.sampledFraction: Invalid value: "high": must be a number between 0 and 1, such as 0.5 (stored as spec.observability.tracing.sampledFraction in v1alpha3)`}},
		{name: "v1alpha2: a field the object itself has wins over the annotation", version: V1alpha2,
			annotations: v3(`{"sidecar":{"logLevel":"loud"}}`)},
		{name: "v1alpha2: a value the Go types cannot hold", version: V1alpha2,
			annotations: v3(`{"repoServer":{"port":2147483648}}`), want: []string{
				hubAnn + `: Invalid value: "{\"repoServer\":{\"port\":2147483648}}": must be the JSON the converter writes (v1alpha3 fields at their spec paths, such as {"ingress":{"type":"NodePort"}}): converting fsm-system/fsm-mesh-config to v1alpha3: annotation conversion.flomesh.io/v1alpha3-fields is not valid: json: cannot unmarshal number 2147483648 into Go struct field RepoServer.HubOnly.repoServer.port of type int32`}},
		{name: "v1alpha2: a quantity the pattern admits and the parser refuses", version: V1alpha2,
			annotations: v3(`{"sidecar":{"healthcheckResources":{"limits":{"cpu":"1e1.5"}}}}`), want: []string{
				hubAnn + `: Invalid value: "1e1.5": sidecar.healthcheckResources.limits[cpu]: must be a quantity such as 500m, 2 or 64Mi: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`}},
		{name: "v1alpha1: not JSON", version: V1alpha1, annotations: v3(`{"ingress":`), want: []string{
			hubAnn + `: Invalid value: "{\"ingress\":": must be the JSON the converter writes (v1alpha3 fields at their spec paths, such as {"ingress":{"type":"NodePort"}}): converting fsm-system/fsm-mesh-config to v1alpha3: annotation conversion.flomesh.io/v1alpha3-fields is not valid: unexpected end of JSON input`}},
		{name: "v1alpha2: the other annotation is the converter's to overwrite", version: V1alpha2,
			annotations: v2(`{"sidecar":{"initContainerImage":"Bad Image"}}`)},
		{name: "v1alpha1: exact JSON for a value edited since is not applied", version: V1alpha1,
			annotations: exact(`[{"path":["spec","sidecar","logLevel"],"was":"loud","got":"debug"}]`)},
		{name: "v1alpha2: exact JSON that is not the converter's", version: V1alpha2,
			annotations: exact(`[{"path":"spec"}]`), want: []string{
				exactAnn + `: Invalid value: "[{\"path\":\"spec\"}]": must be the JSON the converter writes (a list of {"path":["spec",...],"was":...,"got":...}), or remove it: annotation conversion.flomesh.io/v1alpha3-json is not valid: json: cannot unmarshal string into Go struct field changeJSON.path of type []string`}},

		{name: "v1alpha3: legacy fields valid", version: V1alpha3,
			annotations: v2(`{"sidecar":{"sidecarClass":"pipy","initContainerImage":"flomesh/init:1","sidecarDrivers":[{"sidecarName":"pipy","proxyServerPort":6060}]}}`)},
		{name: "v1alpha3: legacy fields the old versions refuse", version: V1alpha3,
			annotations: v2(`{"sidecar":{"initContainerImage":"Bad Image","sidecarDrivers":[{"sidecarName":"pipy","sidecarImage":"flomesh/pipy:1.5.14","proxyServerPort":70000}]}}`), want: []string{
				badLegacyImage,
				legacyAnn + `.sidecar.sidecarDrivers[0].proxyServerPort: Invalid value: 70000: should be less than or equal to 65535`}},
		// The converter reads only sidecarClass, initContainerImage and
		// sidecarDrivers; a key it ignores hides none of them.
		{name: "v1alpha3: legacy field next to a mistyped key the converter ignores", version: V1alpha3,
			annotations: v2(`{"sidecar":{"logLevel":5,"initContainerImage":"Bad Image"}}`), want: []string{badLegacyImage}},
		{name: "v1alpha3: legacy field next to an unparsable quantity the converter ignores", version: V1alpha3,
			annotations: v2(`{"sidecar":{"resources":{"limits":{"cpu":true}},"initContainerImage":"Bad Image"}}`), want: []string{badLegacyImage}},
		{name: "v1alpha3: legacy field after a malformed resources key the converter ignores", version: V1alpha3,
			annotations: v2(`{"sidecar":{"healthcheckResources":{"requests":{"memory":[1]}},"initContainerImage":"Bad Image"}}`), want: []string{badLegacyImage}},
		{name: "v1alpha3: legacy fields that would break reads in the old versions", version: V1alpha3,
			annotations: v2(`{"sidecar":{"sidecarDrivers":[{"proxyServerPort":2147483648}]}}`), want: []string{
				legacyAnn + `: Invalid value: "{\"sidecar\":{\"sidecarDrivers\":[{\"proxyServerPort\":2147483648}]}}": must be the JSON the converter writes, such as {"sidecar":{"sidecarClass":"pipy"}}, or reads in config.flomesh.io/v1alpha1 fail: converting fsm-system/fsm-mesh-config to v1alpha1: annotation conversion.flomesh.io/v1alpha2-fields is not valid: json: cannot unmarshal number 2147483648 into Go struct field SidecarDriverSpec.sidecar.sidecarDrivers.proxyServerPort of type int32`}},
		// Not overwritten: the converter reads a v1alpha3 object carrying
		// it as an old version's write stored relabelled
		// (TestV1alpha3WriteWithOldVersionAnnotation).
		{name: "v1alpha3: an old version's annotation", version: V1alpha3,
			annotations: v3(`{"ingress":{"type":"Bogus"}}`), want: []string{
				hubAnn + `: Invalid value: "{\"ingress\":{\"type\":\"Bogus\"}}": ` + oldVersionAnnotationDetail}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Validate(tc.version, objectJSON(t, tc.version, tc.edit, tc.annotations))
			if got := messages(r.Errors); !equal(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestConversionAnnotationWarnings: a v1alpha1/v1alpha2 write gets the
// warnings of the v1alpha3 object it is stored as, as a v1alpha3 write of
// that object does ("Old-version writes are judged as stored"): a port above
// 32767 that only conversion.flomesh.io/v1alpha3-fields carries is named at
// its place in the annotation; one the object itself has is warned of once,
// at its spec path.
func TestConversionAnnotationWarnings(t *testing.T) {
	const cannot = ` is above 32767: FSM's controller reads this field as an int16 and cannot decode a MeshConfig holding it`
	repoPort := func(h *v1alpha3.MeshConfig) { h.Spec.RepoServer.Port = 40000 }
	tracingPort := func(h *v1alpha3.MeshConfig) { h.Spec.Observability.Tracing.Port = 40000 }
	cases := []struct {
		name    string
		version string
		edit    func(*v1alpha3.MeshConfig)
		want    []string // besides the deprecation warning
	}{
		{name: "v1alpha3: repoServer.port", version: V1alpha3, edit: repoPort, want: []string{
			"spec.repoServer.port: 40000" + cannot}},
		{name: "v1alpha2: repoServer.port in the annotation", version: V1alpha2, edit: repoPort, want: []string{
			hubAnn + ".repoServer.port: 40000" + cannot + " (stored as spec.repoServer.port in v1alpha3)"}},
		{name: "v1alpha1: repoServer.port in the annotation", version: V1alpha1, edit: repoPort, want: []string{
			hubAnn + ".repoServer.port: 40000" + cannot + " (stored as spec.repoServer.port in v1alpha3)"}},
		{name: "v1alpha2: tracing.port in the object, warned once", version: V1alpha2, edit: tracingPort, want: []string{
			"spec.observability.tracing.port: 40000" + cannot}},
		{name: "v1alpha1: tracing.port in the object, warned once", version: V1alpha1, edit: tracingPort, want: []string{
			"spec.observability.tracing.port: 40000" + cannot}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Validate(tc.version, objectJSON(t, tc.version, tc.edit, nil))
			if len(r.Errors) != 0 {
				t.Fatalf("unexpected errors: %v", r.Errors)
			}
			want := tc.want
			if IsDeprecatedVersion(tc.version) {
				want = append([]string{DeprecationWarning(tc.version)}, want...)
			}
			if !equal(r.Warnings, want) {
				t.Errorf("warnings:\n got %q\nwant %q", r.Warnings, want)
			}
		})
	}
}

// TestConversionAnnotationsRatchet: on UPDATE an annotation error the stored
// object already has only warns, like any other; a changed value denies.
func TestConversionAnnotationsRatchet(t *testing.T) {
	bad := map[string]string{lossless.AnnotationV1Alpha3Fields: `{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"Sometimes"}}`}
	worse := map[string]string{lossless.AnnotationV1Alpha3Fields: `{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"Often"}}`}
	legacy := map[string]string{lossless.AnnotationV1Alpha2Fields: `{"sidecar":{"initContainerImage":"Bad Image"}}`}
	edited := func(h *v1alpha3.MeshConfig) { h.Spec.Sidecar.LogLevel = "debug" }
	cases := []struct {
		name              string
		version           string
		obj, old          []byte
		wantErrs, wantWrn int
	}{
		{name: "v1alpha2: unchanged annotation, other field edited", version: V1alpha2,
			obj: objectJSON(t, V1alpha2, edited, bad), old: objectJSON(t, V1alpha2, nil, bad), wantWrn: 1},
		{name: "v1alpha2: annotation value changed", version: V1alpha2,
			obj: objectJSON(t, V1alpha2, nil, worse), old: objectJSON(t, V1alpha2, nil, bad), wantErrs: 1},
		{name: "v1alpha2: annotation added", version: V1alpha2,
			obj: objectJSON(t, V1alpha2, nil, bad), old: objectJSON(t, V1alpha2, nil, nil), wantErrs: 1},
		{name: "v1alpha3: unchanged legacy annotation", version: V1alpha3,
			obj: objectJSON(t, V1alpha3, edited, legacy), old: objectJSON(t, V1alpha3, nil, legacy), wantWrn: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ValidateUpdate(tc.version, tc.obj, tc.old)
			deprecation := 0
			if IsDeprecatedVersion(tc.version) {
				deprecation = 1
			}
			if len(r.Errors) != tc.wantErrs || len(r.Warnings) != tc.wantWrn+deprecation {
				t.Errorf("errors %v, warnings %q; want %d errors, %d warnings besides the deprecation", r.Errors, r.Warnings, tc.wantErrs, tc.wantWrn)
			}
		})
	}
}

// TestExactJSONAnnotation: conversion.flomesh.io/v1alpha3-json on a
// v1alpha1/v1alpha2 write is admitted as the converter writes it, and
// refused when it would put back more than how the stored v1alpha3 object
// spells what that version shows: the apiserver stores a converted object
// without validating it, so a crafted one could otherwise store a value of
// the wrong type (every read in the old versions fails), set metadata, or
// drop a section v1alpha3 requires.
func TestExactJSONAnnotation(t *testing.T) {
	// What the converter writes for FSM's preset without clusterSet and
	// with a quantity spelled as users do.
	hub := presetHub(t)
	raw, err := json.Marshal(hub)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	delete(spec, "clusterSet")
	spec["sidecar"].(map[string]any)["resources"] = map[string]any{"limits": map[string]any{"cpu": "1000m"}}
	m["apiVersion"], m["kind"] = Group+"/"+V1alpha3, Kind
	source, _ := json.Marshal(m)
	for _, version := range []string{V1alpha1, V1alpha2} {
		down := NewSpoke(version)
		if err := convert.FromHub(source, func() conversion.Hub { return &v1alpha3.MeshConfig{} }, down); err != nil {
			t.Fatal(err)
		}
		if down.GetAnnotations()[lossless.AnnotationV1Alpha3JSON] == "" {
			t.Fatalf("setup: %s object without %s", version, lossless.AnnotationV1Alpha3JSON)
		}
		obj := asVersion(t, version, down)
		if r := Validate(version, obj); len(r.Errors) != 0 {
			t.Errorf("%s: the converter's own annotation is refused: %v", version, messages(r.Errors))
		}
	}

	// The value at path in the v1alpha3 object a v1alpha1 write of the
	// preset is stored as, as JSON.
	clean := objectJSON(t, V1alpha1, nil, nil)
	storedAt := func(path ...string) string {
		src := NewSpoke(V1alpha1)
		if err := json.Unmarshal(clean, src); err != nil {
			t.Fatal(err)
		}
		hub, err := convert.ToHub(src, &v1alpha3.MeshConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(hub, &v); err != nil {
			t.Fatal(err)
		}
		for _, k := range path {
			v = v.(map[string]any)[k]
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	const refused = exactAnn + `: Invalid value: `
	for _, tc := range []struct {
		name, annotation, want string
	}{{
		name:       "a value of the wrong type",
		annotation: `[{"path":["spec","featureFlags","enableEgressPolicy"],"was":"yes","got":` + storedAt("spec", "featureFlags", "enableEgressPolicy") + `}]`,
		want:       `annotation conversion.flomesh.io/v1alpha3-json puts back a value the hub version cannot hold: json: cannot unmarshal string into Go struct field FeatureFlags.spec.featureFlags.enableEgressPolicy of type bool`,
	}, {
		name:       "metadata",
		annotation: `[{"path":["metadata","annotations"],"was":{"conversion.flomesh.io/v1alpha2-fields":"{\"sidecar\":{\"initContainerImage\":\"Bad Image\"}}"}}]`,
		want:       `item 0: path ["metadata" "annotations"] is not a field under spec`,
	}, {
		name:       "a required section dropped",
		annotation: `[{"path":["spec","connector"],"got":` + storedAt("spec", "connector") + `}]`,
		want:       `applied, the v1alpha3 object this write is stored as fails the v1alpha3 schema: spec.connector: Required value`,
	}, {
		name:       "a value v1alpha1 shows",
		annotation: `[{"path":["spec","sidecar","logLevel"],"was":"debug","got":` + storedAt("spec", "sidecar", "logLevel") + `}]`,
		want:       `it changes what v1alpha1 shows, at spec.sidecar.logLevel`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := Validate(V1alpha1, objectJSON(t, V1alpha1, nil, map[string]string{lossless.AnnotationV1Alpha3JSON: tc.annotation}))
			got := messages(r.Errors)
			if len(got) != 1 || !strings.HasPrefix(got[0], refused) || !strings.Contains(got[0], tc.want) {
				t.Errorf("errors %q, want one at %s containing %q", got, exactAnn, tc.want)
			}
		})
	}
}

// asVersion is obj (a MeshConfig of any version) as the apiserver sends it
// in version.
func asVersion(t testing.TB, version string, obj any) []byte {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["apiVersion"], m["kind"] = Group+"/"+version, Kind
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
