package chart_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// The values the default MeshConfig (the pre-install hook) is written from:
// whatever the schema accepts must make a MeshConfig that the CRD's schema,
// validator/meshconfig and strict v1alpha3 decoding all accept, or the
// install fails mid-way / stores a MeshConfig our own validator denies; what
// the schema refuses is refused with a message naming the value.

// hookMeshConfig renders values and returns the MeshConfig hook.
func hookMeshConfig(t *testing.T, values string) *unstructured.Unstructured {
	t.Helper()
	return mustFind(t, mustRender(t, values), "MeshConfig", "fsm-mesh-config")
}

// hookCRDErrors is what the apiserver does on create with the chart's CRD:
// prune, drop non-nullable nulls, default, validate (v1alpha3 schema).
func hookCRDErrors(t *testing.T, mc *unstructured.Unstructured) field.ErrorList {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(charttest.Dir(), "crds", "config.flomesh.io_meshconfigs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	var v1schema *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1alpha3" {
			v1schema = v.Schema.OpenAPIV3Schema
		}
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1schema, internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(internal)
	if err != nil {
		t.Fatal(err)
	}
	obj := runtime.DeepCopyJSON(mc.Object)
	structuralpruning.Prune(obj, s, true)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, s)
	structuraldefaulting.Default(obj, s)
	sv, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		t.Fatal(err)
	}
	return apiservervalidation.ValidateCustomResource(nil, obj, sv)
}

// hookValidatorErrors is what validator/meshconfig says of the object.
func hookValidatorErrors(t *testing.T, mc *unstructured.Unstructured) field.ErrorList {
	t.Helper()
	js, err := json.Marshal(mc.Object)
	if err != nil {
		t.Fatal(err)
	}
	return meshconfig.Validate(meshconfig.V1alpha3, js).Errors
}

// hookStrictErr is strictMeshConfig without t.Fatal.
func hookStrictErr(t *testing.T, mc *unstructured.Unstructured) error {
	t.Helper()
	js, err := json.Marshal(mc.Object)
	if err != nil {
		t.Fatal(err)
	}
	var typed v1alpha3.MeshConfig
	return yaml.UnmarshalStrict(js, &typed)
}

// hookInvalid lists every way the MeshConfig would be refused: by the CRD's
// schema on create (the pre-install hook fails, Helm stops mid-install), by
// validator/meshconfig, or by strict decoding into the v1alpha3 types.
func hookInvalid(t *testing.T, mc *unstructured.Unstructured) []string {
	t.Helper()
	var bad []string
	if errs := hookCRDErrors(t, mc); len(errs) > 0 {
		bad = append(bad, "the CRD refuses it (pre-install hook fails): "+errs.ToAggregate().Error())
	}
	if errs := hookValidatorErrors(t, mc); len(errs) > 0 {
		bad = append(bad, "validator/meshconfig denies it: "+errs.ToAggregate().Error())
	}
	if err := hookStrictErr(t, mc); err != nil {
		bad = append(bad, "it is not strict v1alpha3: "+err.Error())
	}
	return bad
}

// mustRenderValidHook renders values and fails the test unless the
// MeshConfig hook is valid every way.
func mustRenderValidHook(t *testing.T, values string) *unstructured.Unstructured {
	t.Helper()
	mc := hookMeshConfig(t, values)
	for _, b := range hookInvalid(t, mc) {
		t.Errorf("schema accepts %s, but %s", values, b)
	}
	return mc
}

// mustRefuseValues fails the test unless rendering values fails with an
// error containing every want.
func mustRefuseValues(t *testing.T, values string, want ...string) {
	t.Helper()
	_, err := charttest.Render(ns, mustValues(t, values))
	if err == nil {
		t.Errorf("values accepted:\n%s", values)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error lacks %q:\n%v", values, w, err)
		}
	}
}

// validatorDenies: the default MeshConfig with spec.<path> set to v is denied
// by validator/meshconfig, so a value the schema refuses is one the
// validator refuses too.
func validatorDenies(t *testing.T, v any, path ...string) bool {
	t.Helper()
	defaultHookOnce.Do(func() { defaultHook = hookMeshConfig(t, "{}") })
	if defaultHook == nil {
		t.Fatal("the default MeshConfig did not render")
	}
	mc := defaultHook.DeepCopy()
	if err := unstructured.SetNestedField(mc.Object, v, append([]string{"spec"}, path...)...); err != nil {
		t.Fatal(err)
	}
	return len(hookValidatorErrors(t, mc)) > 0
}

var (
	defaultHookOnce sync.Once
	defaultHook     *unstructured.Unstructured
)

// nullAt is a values document setting path to null.
func nullAt(path []string) map[string]any {
	var v any
	for i := len(path) - 1; i >= 0; i-- {
		v = map[string]any{path[i]: v}
	}
	return v.(map[string]any)
}

// valuesPaths lists every key of values.yaml (maps descended, lists not).
func valuesPaths(t *testing.T) [][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(charttest.Dir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var walk func(prefix []string, m map[string]any)
	walk = func(prefix []string, m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(append([]string{}, prefix...), k)
			out = append(out, p)
			if sub, ok := m[k].(map[string]any); ok {
				walk(p, sub)
			}
		}
	}
	walk(nil, vals)
	return out
}

// Helm's documented null ("drop this default") removes a key; the keys the
// MeshConfig is written from are required, so the render fails with the
// schema's message instead of a MeshConfig missing a field the CRD requires
// (or, for certKeyBitSize, one the validator denies).
func TestMeshConfigRequiredValueNullRefused(t *testing.T) {
	cases := map[string][]string{
		"fsm": {"enableEgress", "enablePermissiveTrafficPolicy", "http1PerRequestLoadBalancing", "http2PerRequestLoadBalancing",
			"outboundPortExclusionList", "inboundPortExclusionList", "outboundIPRangeExclusionList", "serviceAccessMode", "localProxyMode",
			"featureFlags", "sidecar", "repoServer", "pluginChains", "meshConfig"},
		"fsm/sidecar":             {"image", "sidecarLogLevel", "sidecarDisabledMTLS", "compressConfig", "sidecarTimeout"},
		"fsm/repoServer":          {"ipaddr", "port", "codebase"},
		"fsm/certificateProvider": {"certKeyBitSize"},
		"fsm/meshConfig":          {"create"},
		"fsm/pluginChains":        {"inbound-tcp", "inbound-http", "outbound-tcp", "outbound-http"},
	}
	for _, p := range valuesPaths(t) {
		if len(p) == 3 && p[1] == "featureFlags" {
			cases["fsm/featureFlags"] = append(cases["fsm/featureFlags"], p[2])
		}
	}
	if len(cases["fsm/featureFlags"]) != 18 {
		t.Fatalf("values.yaml has %d feature flags, want the CRD's 18", len(cases["fsm/featureFlags"]))
	}
	for parent, keys := range cases {
		for _, key := range keys {
			path := append(strings.Split(parent, "/"), key)
			t.Run(strings.Join(path, "."), func(t *testing.T) {
				t.Parallel()
				_, err := charttest.Render(ns, nullAt(path))
				if err == nil {
					t.Fatalf("%s: null accepted", strings.Join(path, "."))
				}
				want := fmt.Sprintf("at '/%s': missing property '%s'", parent, key)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			})
		}
	}
}

// Every key of values.yaml set to null: the render fails, or the MeshConfig
// is valid every way.
func TestMeshConfigNullDefaultRefusedOrValid(t *testing.T) {
	for _, p := range valuesPaths(t) {
		t.Run(strings.Join(p, "."), func(t *testing.T) {
			t.Parallel()
			r, err := charttest.Render(ns, nullAt(p))
			if err != nil {
				return
			}
			mc := r.Find("MeshConfig", "fsm-mesh-config")
			if mc == nil {
				t.Fatalf("%s: null renders no MeshConfig", strings.Join(p, "."))
			}
			for _, b := range hookInvalid(t, mc) {
				t.Errorf("%s: null accepted, but %s", strings.Join(p, "."), b)
			}
		})
	}
}

// fsm.warmup.duration and fsm.configResyncInterval: exactly the Go durations
// the validator takes (time.ParseDuration, not negative). "" is the chart's
// default (90s, 0s).
func TestMeshConfigDurationsAsValidator(t *testing.T) {
	accepted := []string{"", "0", "+0", "-0", "0s", "-0s", "-0.0h", "90s", "1h30m", "1.5h", ".5s", "5.s", "1us", "1µs", "1μs", "100ns", "+5s", "2h45m30.5s"}
	refused := []string{"abc", "1d", "-5s", "-1ns", "30", "1 s", " 5s", "s", ".s", "5S", "1h-5m", "--5s", "-", "+"}
	for _, f := range []struct {
		key    string   // the value in a values document
		schema string   // its path in the schema's messages
		spec   []string // where the MeshConfig has it
		def    string   // written for ""
	}{
		{"warmup: {duration: %q}", "/fsm/warmup/duration", []string{"warmup", "duration"}, "90s"},
		{"configResyncInterval: %q", "/fsm/configResyncInterval", []string{"sidecar", "configResyncInterval"}, "0s"},
	} {
		for _, v := range accepted {
			values := "fsm: {" + fmt.Sprintf(f.key, v) + "}"
			t.Run(values, func(t *testing.T) {
				t.Parallel()
				mc := mustRenderValidHook(t, values)
				want := v
				if v == "" {
					want = f.def
				}
				if got, _, _ := unstructured.NestedString(mc.Object, append([]string{"spec"}, f.spec...)...); got != want {
					t.Errorf("spec.%s = %q, want %q", strings.Join(f.spec, "."), got, want)
				}
			})
		}
		for _, v := range refused {
			values := "fsm: {" + fmt.Sprintf(f.key, v) + "}"
			t.Run(values, func(t *testing.T) {
				t.Parallel()
				mustRefuseValues(t, values, f.schema)
				if !validatorDenies(t, v, f.spec...) {
					t.Errorf("schema refuses %q, validator/meshconfig takes it", v)
				}
			})
		}
	}
}

// minWeight above maxWeight, either one from values.yaml's defaults (10, 100):
// the validator denies it; the render fails naming both values.
func TestMeshConfigWarmupMinAboveMaxRefused(t *testing.T) {
	mustRefuseValues(t, `fsm: {warmup: {maxWeight: 5}}`, "fsm.warmup.minWeight: 10", "fsm.warmup.maxWeight (5)")
	mustRefuseValues(t, `fsm: {warmup: {minWeight: 50, maxWeight: 20}}`, "fsm.warmup.minWeight: 50", "fsm.warmup.maxWeight (20)")
	mustRefuseValues(t, `fsm: {warmup: {minWeight: null, maxWeight: 5}}`, "fsm.warmup.minWeight: 10", "fsm.warmup.maxWeight (5)")
	for _, values := range []string{
		`fsm: {warmup: {maxWeight: 10}}`,
		`fsm: {warmup: {minWeight: 0, maxWeight: 5}}`,
		`fsm: {warmup: {minWeight: 100}}`,
	} {
		t.Run(values, func(t *testing.T) { mustRenderValidHook(t, values) })
	}
}

// remoteLogging.level: 0-2, FSM's schema (the validator takes 0-65535, the
// v1alpha3 type is int32).
func TestMeshConfigRemoteLoggingLevelBounded(t *testing.T) {
	for _, v := range []string{"-1", "3", "3000000000"} {
		mustRefuseValues(t, `fsm: {remoteLogging: {enable: true, level: `+v+`}}`, "/fsm/remoteLogging/level")
	}
	for _, v := range []string{"0", "1", "2"} {
		mc := mustRenderValidHook(t, `fsm: {remoteLogging: {enable: true, level: `+v+`}}`)
		if got, _, _ := unstructured.NestedInt64(mc.Object, "spec", "observability", "remoteLogging", "level"); fmt.Sprint(got) != v {
			t.Errorf("level %s written as %d", v, got)
		}
	}
}

// remoteLogging.sampledFraction: a decimal in [0,1], as tracing's.
func TestMeshConfigRemoteLoggingSampledFractionChecked(t *testing.T) {
	for _, v := range []string{"2", "1.5", "-0.1", "abc", ""} {
		mustRefuseValues(t, `fsm: {remoteLogging: {enable: true, sampledFraction: "`+v+`"}}`, "/fsm/remoteLogging/sampledFraction")
	}
	for _, v := range []string{"0", "0.25", ".5", "1", "1.0"} {
		mustRenderValidHook(t, `fsm: {remoteLogging: {enable: true, sampledFraction: "`+v+`"}}`)
	}
}

// xnetDNSProxy.upstreams[].ip: an IPv4 address (FSM's schema), one the
// validator's netip.ParseAddr takes.
func TestMeshConfigXnetDNSUpstreamIPChecked(t *testing.T) {
	for _, v := range []string{"dns.example", "1.2.3.256", "01.2.3.4", "x1.2.3.4", "1.2.3", ""} {
		mustRefuseValues(t, `fsm: {xnetDNSProxy: {enable: true, upstreams: [{ip: "`+v+`", port: 53}]}}`, "/fsm/xnetDNSProxy/upstreams/0/ip")
	}
	for _, v := range []string{"10.96.0.10", "0.0.0.0", "255.255.255.255"} {
		mustRenderValidHook(t, `fsm: {xnetDNSProxy: {enable: true, upstreams: [{ip: "`+v+`", port: 53}]}}`)
	}
}

// xnetDNSProxy.upstreams[] keys beyond the MeshConfig's (FSM's schema allows
// them, FSM's install drops them): accepted, not written.
func TestMeshConfigXnetDNSUpstreamExtraKeysDropped(t *testing.T) {
	mc := mustRenderValidHook(t, `fsm: {xnetDNSProxy: {enable: true, upstreams: [{name: fsm-controller, namespace: fsm-system, ip: 10.96.0.10, port: 53, protocol: udp, weight: 2}]}}`)
	ups, _, _ := unstructured.NestedSlice(mc.Object, "spec", "sidecar", "xnetDNSProxy", "upstreams")
	want := []any{map[string]any{"name": "fsm-controller", "namespace": "fsm-system", "ip": "10.96.0.10", "port": int64(53)}}
	if mustJSONAny(t, ups) != mustJSONAny(t, want) {
		t.Errorf("upstreams = %s, want %s", mustJSONAny(t, ups), mustJSONAny(t, want))
	}
}

// fsm.image.{registry,name.*,digest.*}: exactly the image references the
// validator (distribution/reference, go-digest: sha256, sha384, sha512 in
// lowercase hex) takes, but for the 255-character limit on a repository path.
func TestMeshConfigImageReferencesAsValidator(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	type ref struct{ key, value string }
	var refused, accepted []ref
	for _, v := range []string{"FSM Controller", "Fsm-controller", "-x", "x-", "a//b", "/a", "a/", "a..b", "a___b", "a:b"} {
		refused = append(refused, ref{"name/fsmController", v})
	}
	for _, v := range []string{"a__b", "my--gateway", "org/fsm-controller", "fsm.gw_2"} {
		accepted = append(accepted, ref{"name/fsmController", v})
	}
	for _, k := range []string{"fsmController", "fsmSidecarInit", "fsmHealthcheck"} {
		for _, v := range []string{"abc", "sha256:" + strings.Repeat("0123456789abcdef", 2), "sha256:" + strings.ToUpper(digest[7:]),
			"sha512:" + strings.Repeat("0123456789abcdef", 4), "sha384:" + digest[7:], digest + "0", "SHA256:" + digest[7:], "md5:" + digest[7:39], "sha1:" + digest[7:47]} {
			refused = append(refused, ref{"digest/" + k, v})
		}
		accepted = append(accepted, ref{"digest/" + k, digest},
			ref{"digest/" + k, "sha384:" + strings.Repeat("0123456789abcdef", 6)},
			ref{"digest/" + k, "sha512:" + strings.Repeat("0123456789abcdef", 8)})
	}
	for _, v := range []string{"ghcr.io//flomesh", "-flomesh", "flomesh/", "/flomesh", "a_b:5000", "flomesh/Org", "reg.example.com:port", "http://reg.example.com", "reg.example.com/-x"} {
		refused = append(refused, ref{"registry", v})
	}
	for _, v := range []string{"flomesh", "my--org", "a_b.c", "localhost:5000", "[::1]:5000/flomesh", "reg.example.com:443/org/sub", "Registry/flomesh"} {
		accepted = append(accepted, ref{"registry", v})
	}
	doc := func(r ref) string {
		parts := strings.Split(r.key, "/")
		if len(parts) == 2 {
			return fmt.Sprintf(`fsm: {image: {%s: {%s: %q}}}`, parts[0], parts[1], r.value)
		}
		return fmt.Sprintf(`fsm: {image: {%s: %q}}`, parts[0], r.value)
	}
	for _, r := range refused {
		t.Run(doc(r), func(t *testing.T) {
			t.Parallel()
			mustRefuseValues(t, doc(r), "/fsm/image/"+r.key)
			if !validatorDenies(t, r.value, append([]string{"image"}, strings.Split(r.key, "/")...)...) {
				t.Errorf("schema refuses %s %q, validator/meshconfig takes it", r.key, r.value)
			}
		})
	}
	for _, r := range accepted {
		t.Run(doc(r), func(t *testing.T) {
			t.Parallel()
			mustRenderValidHook(t, doc(r))
		})
	}
	// Our own image's digest: the same rule (an image reference parser's).
	mustRefuseValues(t, `fsm: {image: {digest: {fsmWebhooks: "sha256:`+strings.Repeat("0123456789abcdef", 2)+`"}}}`, "/fsm/image/digest/fsmWebhooks")
	mustRefuseValues(t, `fsm: {image: {digest: {fsmWebhooks: "sha256:`+strings.ToUpper(digest[7:])+`"}}}`, "/fsm/image/digest/fsmWebhooks")
	mustRender(t, `fsm: {image: {digest: {fsmWebhooks: "`+digest+`"}}}`)
}

// fsm.image.tag: a string or an integer (FSM's schema); a decimal, which
// YAML has already reformatted (1.10 is 1.1), is refused, and an integer is
// written as given, 0 included.
func TestMeshConfigImageTagAsWritten(t *testing.T) {
	for _, v := range []string{"1.10", "0.000001", "-1", "1e20"} {
		mustRefuseValues(t, `fsm: {image: {tag: `+v+`}}`, "/fsm/image/tag")
	}
	for _, tc := range []struct{ values, want string }{
		{`fsm: {image: {tag: 0}}`, "0"},
		{`fsm: {image: {tag: 20240101}}`, "20240101"},
		{`fsm: {image: {tag: "1.10"}}`, "1.10"},
		{`fsm: {image: {tag: ""}}`, "1.5.1"},
		{`fsm: {image: {tag: null}}`, "1.5.1"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			mc := mustRenderValidHook(t, tc.values)
			if got, _, _ := unstructured.NestedString(mc.Object, "spec", "image", "tag"); got != tc.want {
				t.Errorf("spec.image.tag = %q, want %q", got, tc.want)
			}
			if r := mustRender(t, tc.values); !strings.Contains(r.Manifest, "/fsm-sidecar-init:"+tc.want) {
				t.Errorf("the servers' fsm-sidecar-init image does not carry tag %q", tc.want)
			}
		})
	}
}

// fsm.maxDataPlaneConnections: at most 2147483647, which a Go int holds on
// any platform (int64 of a float64 beyond 2^63 wraps to a negative limit).
func TestMeshConfigMaxDataPlaneConnectionsBounded(t *testing.T) {
	for _, v := range []string{"10000000000000000000", "2147483648", "-1"} {
		mustRefuseValues(t, `fsm: {maxDataPlaneConnections: `+v+`}`, "/fsm/maxDataPlaneConnections")
	}
	mc := mustRenderValidHook(t, `fsm: {maxDataPlaneConnections: 2147483647}`)
	if got, _, _ := unstructured.NestedInt64(mc.Object, "spec", "sidecar", "maxDataPlaneConnections"); got != 2147483647 {
		t.Errorf("maxDataPlaneConnections = %d, want 2147483647", got)
	}
}

// fsm.image.pullPolicy "" (FSM's schema accepts it): the MeshConfig gets
// FSM's default, IfNotPresent.
func TestMeshConfigEmptyPullPolicyIsIfNotPresent(t *testing.T) {
	mc := mustRenderValidHook(t, `fsm: {image: {pullPolicy: ""}}`)
	if got, _, _ := unstructured.NestedString(mc.Object, "spec", "image", "pullPolicy"); got != "IfNotPresent" {
		t.Errorf("spec.image.pullPolicy = %q, want IfNotPresent", got)
	}
	mustRefuseValues(t, `fsm: {image: {pullPolicy: Sometimes}}`, "/fsm/image/pullPolicy")
}

// fsm.webhooks.imageTag and fsm.sidecar.image.tag follow fsm.image.tag's
// rule: a decimal (YAML turns 1.10 into 1.1) is refused, an integer is
// written as given, 0 included; an empty webhooks tag is the appVersion.
func TestOtherImageTagsAsWritten(t *testing.T) {
	for _, tc := range []struct{ key, values string }{
		{"/fsm/webhooks/imageTag", `fsm: {webhooks: {imageTag: %s}}`},
		{"/fsm/sidecar/image/tag", `fsm: {sidecar: {image: {tag: %s}}}`},
	} {
		for _, v := range []string{"1.10", "0.000001", "-1", "1e20"} {
			mustRefuseValues(t, fmt.Sprintf(tc.values, v), tc.key)
		}
	}
	c, err := charttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	appVersion := c.Metadata.AppVersion
	for _, tc := range []struct{ values, want string }{
		{`fsm: {webhooks: {imageTag: 0}}`, "/fsm-webhooks:0"},
		{`fsm: {webhooks: {imageTag: 20240101}}`, "/fsm-webhooks:20240101"},
		{`fsm: {webhooks: {imageTag: "1.10"}}`, "/fsm-webhooks:1.10"},
		{`fsm: {webhooks: {imageTag: ""}}`, "/fsm-webhooks:" + appVersion},
		{`fsm: {sidecar: {image: {tag: 0}}}`, "/pipy:0"},
		{`fsm: {sidecar: {image: {tag: 20240101}}}`, "/pipy:20240101"},
		{`fsm: {sidecar: {image: {tag: "1.10"}}}`, "/pipy:1.10"},
	} {
		// The tag ends at a quote or a line's end: 1.10 is not 1.1.
		if r := mustRender(t, tc.values); !regexp.MustCompile(regexp.QuoteMeta(tc.want) + `["'\s]`).MatchString(r.Manifest) {
			t.Errorf("%s: no image %q", tc.values, tc.want)
		}
	}
}

// FSM's sections the chart writes from FSM's keys (ingress, gatewayAPI,
// serviceLB, flb, egressGateway, misc.repoServerImage, clusterSet): every
// value the schema accepts makes a MeshConfig valid every way; a value it
// refuses is one the CRD or validator/meshconfig would refuse where FSM's
// chart writes it.
func TestMeshConfigFSMSectionsValidOrRefused(t *testing.T) {
	levels := func(extra ...any) []any {
		var out []any
		for _, l := range meshconfig.ControlPlaneLogLevels {
			out = append(out, l)
		}
		return append(out, extra...)
	}
	strs := func(ss []string) []any {
		var out []any
		for _, s := range ss {
			out = append(out, s)
		}
		return out
	}
	ports := []any{1, 65535}
	badPorts := []any{0, 65536}
	for _, tc := range []struct {
		value    string // the key, as a values path
		spec     string // where the MeshConfig has it
		accepted []any
		refused  []any
	}{
		{"fsm.fsmIngress.logLevel", "ingress.logLevel", levels(nil), []any{"verbose", "warning", ""}},
		{"fsm.fsmGateway.logLevel", "gatewayAPI.logLevel", levels(nil), []any{"off", ""}},
		{"fsm.egressGateway.logLevel", "egressGateway.logLevel", levels(nil), []any{"critical", ""}},
		{"fsm.fsmIngress.service.type", "ingress.type", append(strs(meshconfig.IngressTypes), nil), []any{"ClusterIP", ""}},
		{"fsm.flb.upstreamMode", "flb.upstreamMode", append(strs(meshconfig.FLBUpstreamModes), nil), []any{"ClusterIP", ""}},
		{"fsm.egressGateway.mode", "egressGateway.mode", append(strs(meshconfig.EgressGatewayModes), nil), []any{"socks5", ""}},
		{"fsm.fsmIngress.http.port", "ingress.http.bind", ports, badPorts},
		{"fsm.fsmIngress.http.containerPort", "ingress.http.listen", ports, badPorts},
		{"fsm.fsmIngress.http.nodePort", "ingress.http.nodePort", ports, badPorts},
		{"fsm.fsmIngress.tls.port", "ingress.tls.bind", ports, badPorts},
		{"fsm.fsmIngress.tls.containerPort", "ingress.tls.listen", ports, badPorts},
		{"fsm.fsmIngress.tls.nodePort", "ingress.tls.nodePort", ports, badPorts},
		{"fsm.fsmIngress.tls.sslPassthrough.upstreamPort", "ingress.tls.sslPassthrough.upstreamPort", ports, badPorts},
		{"fsm.egressGateway.port", "egressGateway.port", ports, badPorts},
		{"fsm.egressGateway.adminPort", "egressGateway.adminPort", ports, badPorts},
		{"fsm.egressGateway.replicaCount", "egressGateway.replicas", []any{0, 2147483647}, []any{-1}},
		{"fsm.serviceLB.image.registry", "serviceLB.image", []any{"", "localhost:5000", "[::1]:5000/flomesh", "reg.example.com/org"}, nil},
		{"fsm.repoServer.image.name", "misc.repoServerImage", []any{"", "org/pipy-repo", "pipy__repo"}, nil},
		{"fsm.repoServer.image.tag", "misc.repoServerImage", []any{"", 0, 20240101, "v1.5.12-rc.1"}, nil},
		{"clusterSet.controlPlaneUID", "clusterSet.controlPlaneUID", []any{"", "cp-1"}, nil},
		{"clusterSet.name", "clusterSet.name", []any{""}, nil},
	} {
		doc := func(v any) string {
			path := strings.Split(tc.value, ".")
			m := v
			for i := len(path) - 1; i >= 0; i-- {
				m = map[string]any{path[i]: m}
			}
			js, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return string(js)
		}
		for _, v := range tc.accepted {
			t.Run(doc(v), func(t *testing.T) {
				t.Parallel()
				mustRenderValidHook(t, doc(v))
			})
		}
		for _, v := range tc.refused {
			t.Run(doc(v), func(t *testing.T) {
				t.Parallel()
				mustRefuseValues(t, doc(v), "/"+strings.ReplaceAll(tc.value, ".", "/"))
				defaultHookOnce.Do(func() { defaultHook = hookMeshConfig(t, "{}") })
				mc := defaultHook.DeepCopy()
				if i, ok := v.(int); ok {
					v = int64(i)
				}
				if err := unstructured.SetNestedField(mc.Object, v, append([]string{"spec"}, strings.Split(tc.spec, ".")...)...); err != nil {
					t.Fatal(err)
				}
				if len(hookInvalid(t, mc)) == 0 {
					t.Errorf("schema refuses %s %#v, but spec.%s = %#v is valid", tc.value, v, tc.spec, v)
				}
			})
		}
	}
}

// TestGoDurationOverflowRefused: a duration the schema's pattern takes but
// Go's time.ParseDuration does not (over 2562047h47m16.854775807s) is
// refused at render time naming the key; durations near that limit Go takes
// render. Before, the servers crash-looped on the flag, or the MeshConfig
// carried a value FSM's controller cannot parse.
func TestGoDurationOverflowRefused(t *testing.T) {
	keys := map[string]string{ // key: a values document with %s for the value
		"fsm.bootstrapCertValidityDuration":                   `fsm: {bootstrapCertValidityDuration: %s}`,
		"fsm.certificateProvider.serviceCertValidityDuration": `fsm: {certificateProvider: {serviceCertValidityDuration: %s}}`,
		"fsm.webhooks.injectorSecretHandoffBudget":            `fsm: {webhooks: {injectorSecretHandoffBudget: %s}}`,
		"fsm.warmup.duration":                                 `fsm: {warmup: {duration: %s}}`,
		"fsm.configResyncInterval":                            `fsm: {configResyncInterval: %s}`,
	}
	for _, tc := range []struct {
		v  string
		ok bool // Go's time.ParseDuration takes it
	}{
		{"2562047h", true},
		{"2562047h47m16s", true},
		{"153722867m", true},
		{"1000000h1000000h.5s", true},
		{"2562048h", false},
		{"2562047h48m", false},
		{"1500000h1500000h", false},
		{"99999999999999999999s", false},
		{"9999999999h", false},
	} {
		if _, err := time.ParseDuration(tc.v); (err == nil) != tc.ok {
			t.Fatalf("test value %q: time.ParseDuration error %v, want ok=%v", tc.v, err, tc.ok)
		}
		for key, doc := range keys {
			values := fmt.Sprintf(doc, tc.v)
			t.Run(values, func(t *testing.T) {
				t.Parallel()
				if key == "fsm.webhooks.injectorSecretHandoffBudget" && len(regexp.MustCompile(`[a-zµ]+`).FindAllString(tc.v, -1)) > 1 {
					// Its schema takes one unit only.
					mustRefuseValues(t, values, "/fsm/webhooks/injectorSecretHandoffBudget", "does not match pattern")
					return
				}
				if !tc.ok {
					mustRefuseValues(t, values, key, fmt.Sprintf("%q", tc.v), "largest Go duration")
					return
				}
				if _, err := charttest.Render(ns, mustValues(t, values)); err != nil {
					t.Errorf("values refused: %v", err)
				}
			})
		}
	}
}

// TestSubNanosecondDurationsRefused: a duration the schema's syntax takes
// whose every part is below a nanosecond (0.5ns, 0.0009us, 0.5ns0.5ns) is 0
// to Go's time.ParseDuration, which truncates each part, and serve refuses
// a zero validity or hand-off budget at start (exit 2, a crash loop). The
// schema refuses it at render, naming the key; a value Go reads as 1ns or
// more renders. m and h parts are at their exact thresholds (1/6e10 and
// 1/3.6e12), so Go decides each row here.
func TestSubNanosecondDurationsRefused(t *testing.T) {
	keys := map[string]string{ // schema path: a values document with %s for the value
		"/fsm/bootstrapCertValidityDuration":                   `fsm: {bootstrapCertValidityDuration: %q}`,
		"/fsm/certificateProvider/serviceCertValidityDuration": `fsm: {certificateProvider: {serviceCertValidityDuration: %q}}`,
		"/fsm/webhooks/injectorSecretHandoffBudget":            `fsm: {webhooks: {injectorSecretHandoffBudget: %q}}`,
	}
	for _, v := range []string{
		"0.5ns", ".9ns", "0.999999ns", "1ns", "1.5ns",
		"0.0009us", "0.001us", "0.0009µs", ".000999999ms", ".000001ms", "0.0000000009s", "0.000000001s",
		"0.0000000000166m", "0.0000000000167m", "0.00000000000027h", "0.00000000000028h",
		"0.5ns0.5ns", "0h0.5ns", "0.5ns1ns", "0.5ns1h",
	} {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("test value %q: %v", v, err)
		}
		for key, doc := range keys {
			values := fmt.Sprintf(doc, v)
			t.Run(values, func(t *testing.T) {
				t.Parallel()
				if key == "/fsm/webhooks/injectorSecretHandoffBudget" && len(regexp.MustCompile(`[a-zµ]+`).FindAllString(v, -1)) > 1 {
					return // one unit only (TestGoDurationOverflowRefused)
				}
				if d == 0 {
					mustRefuseValues(t, values, key)
					return
				}
				if _, err := charttest.Render(ns, mustValues(t, values)); err != nil {
					t.Errorf("%s (%v to Go) refused: %v", v, d, err)
				}
			})
		}
	}
}
