package chart_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestMeshConfigMatchesPreset: with default values the chart's MeshConfig is
// the repo's preset (apis/config/v1alpha3/testdata), which the apis package
// keeps valid v1alpha3; only the random cluster uid differs. Strict decoding
// catches a field the Go types do not know.
func TestMeshConfigMatchesPreset(t *testing.T) {
	r := mustRender(t, "")
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
	typed := strictMeshConfig(t, mc)
	if typed.Spec.ClusterSet.UID == "" {
		t.Error("clusterSet.uid empty")
	}

	data, err := os.ReadFile(filepath.Join(charttest.Dir(), "..", "..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	preset := map[string]any{}
	if err := yaml.Unmarshal(data, &preset); err != nil {
		t.Fatal(err)
	}
	gotSpec := mc.Object["spec"].(map[string]any)
	wantSpec := preset["spec"].(map[string]any)
	for _, s := range []map[string]any{gotSpec, wantSpec} {
		unstructured.RemoveNestedField(s, "clusterSet", "uid")
	}
	// Compare through JSON so number types agree.
	if !reflect.DeepEqual(normalize(t, gotSpec), normalize(t, wantSpec)) {
		g, _ := yaml.Marshal(gotSpec)
		w, _ := yaml.Marshal(wantSpec)
		t.Errorf("chart MeshConfig spec differs from the preset\n--- chart\n%s\n--- preset\n%s", g, w)
	}
}

func TestMeshConfigFromValues(t *testing.T) {
	r := mustRender(t, `
fsm:
  meshConfig: {clusterUID: 3f1c2a9e-8b7d-4c6e-9f00-1234567890ab}
  certificateProvider: {serviceCertValidityDuration: 1h, certKeyBitSize: 4096}
  sidecar: {sidecarLogLevel: debug}
  outboundPortExclusionList: [6379]
  outboundIPRangeExclusionList: [10.0.0.0/8]
  featureFlags: {enablePluginPolicy: true}
`)
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
	for path, want := range map[string]any{
		"spec.clusterSet.uid":                          "3f1c2a9e-8b7d-4c6e-9f00-1234567890ab",
		"spec.certificate.serviceCertValidityDuration": "1h",
		"spec.certificate.certKeyBitSize":              int64(4096),
		"spec.sidecar.logLevel":                        "debug",
		"spec.featureFlags.enablePluginPolicy":         true,
		"spec.featureFlags.enableIngressBackendPolicy": true,
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(mc.Object, splitPath(path)...)
		if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	ports, _, _ := unstructured.NestedSlice(mc.Object, "spec", "traffic", "outboundPortExclusionList")
	if len(ports) != 1 || ports[0] != int64(6379) {
		t.Errorf("outboundPortExclusionList %v", ports)
	}
	if r := mustRender(t, "fsm: {meshConfig: {create: false}}"); r.Find("MeshConfig", "fsm-mesh-config") != nil {
		t.Error("MeshConfig rendered with create=false")
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func normalize(t *testing.T, v any) any {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// fsmPresetFile is the MeshConfig FSM's install stores with its chart's
// default values (its header says how it was rendered).
const fsmPresetFile = "../../../shared/fsm-reference/meshconfig-preset-v1alpha3.yaml"

// strictMeshConfig decodes a rendered MeshConfig into the v1alpha3 types,
// refusing a field they do not know (the CRD would prune it).
func strictMeshConfig(t *testing.T, mc *unstructured.Unstructured) *v1alpha3.MeshConfig {
	t.Helper()
	js, err := json.Marshal(mc.Object)
	if err != nil {
		t.Fatal(err)
	}
	var typed v1alpha3.MeshConfig
	if err := yaml.UnmarshalStrict(js, &typed); err != nil {
		t.Fatalf("rendered MeshConfig is not valid v1alpha3: %v", err)
	}
	return &typed
}

// TestFSMMeshConfigKeysReachMeshConfig: FSM v1.5.1's chart writes these
// fsm.* values into the MeshConfig it creates
// (charts/fsm/templates/preset-mesh-config.yaml), and the injector applies
// them to every meshed pod (injector.SettingsFromMeshConfig); an FSM values
// file setting them must inject as FSM would, not get FSM's defaults. The
// clusterSet, ingress, gatewayAPI, serviceLB, flb, egressGateway and misc
// sections configure FSM's controller and gateways as FSM's install would.
func TestFSMMeshConfigKeysReachMeshConfig(t *testing.T) {
	r := mustRender(t, `
fsm:
  enablePrivilegedInitContainer: true
  trafficInterceptionMode: NodeLevel
  outboundIPRangeInclusionList: [10.0.0.0/8]
  networkInterfaceExclusionList: [eth1, "veth+"]
  localDNSProxy: {enable: true, primaryUpstreamDNSServerIPAddr: 10.96.0.10, secondaryUpstreamDNSServerIPAddr: kube-dns.kube-system.svc.cluster.local, searchesWithNamespace: false}
  sidecar: {holdApplicationUntilProxyStarts: false, gracefulExitUntilDownstreamEnds: false}
  tracing: {enable: true, address: jaeger.fsm-system.svc.cluster.local, port: 9412, endpoint: /api/v2/spans, sampledFraction: "0.2"}
  controllerLogLevel: warn
  meshConfig: {clusterUID: 3f1c2a9e-8b7d-4c6e-9f00-1234567890ab}
  fsmIngress:
    enabled: true
    namespaced: true
    logLevel: debug
    service: {type: NodePort}
    http: {enabled: false, port: 8080, containerPort: 9000, nodePort: 31080}
    tls: {enabled: true, port: 8444, containerPort: 9443, nodePort: 31443, mTLS: true, sslPassthrough: {enabled: true, upstreamPort: 8443}}
  fsmGateway: {logLevel: warn}
  serviceLB: {enabled: true, image: {registry: reg.example.com, name: klipper-lb, tag: v0.5.0}}
  flb: {enabled: true, strictMode: true, upstreamMode: NodePort, secretName: my-flb-secret}
  egressGateway: {enabled: true, logLevel: debug, mode: sock5, port: 1081, adminPort: 6061, replicaCount: 3}
  repoServer: {image: {registry: reg.example.com, name: pipy-repo, tag: 1.5.12}}
clusterSet: {isManaged: true, region: eu, zone: eu-west-1, group: edge, name: cluster-1, controlPlaneUID: cp-1}
`)
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
	strictMeshConfig(t, mc)
	for _, tc := range []struct {
		value string
		path  string
		want  any
	}{
		{"fsm.enablePrivilegedInitContainer", "spec.sidecar.enablePrivilegedInitContainer", true},
		{"fsm.trafficInterceptionMode", "spec.traffic.interceptionMode", "NodeLevel"},
		{"fsm.outboundIPRangeInclusionList", "spec.traffic.outboundIPRangeInclusionList", []any{"10.0.0.0/8"}},
		{"fsm.networkInterfaceExclusionList", "spec.traffic.networkInterfaceExclusionList", []any{"eth1", "veth+"}},
		{"fsm.sidecar.holdApplicationUntilProxyStarts", "spec.sidecar.holdApplicationUntilProxyStarts", false},
		{"fsm.sidecar.gracefulExitUntilDownstreamEnds", "spec.sidecar.gracefulExitUntilDownstreamEnds", false},
		// The keys not given keep FSM's defaults, as Helm merges FSM's
		// values.yaml; searchesWith* are not MeshConfig fields.
		{"fsm.localDNSProxy", "spec.sidecar.localDNSProxy", map[string]any{
			"enable": true, "generateIPv6BasedOnIPv4": false,
			"primaryUpstreamDNSServerIPAddr": "10.96.0.10", "secondaryUpstreamDNSServerIPAddr": "kube-dns.kube-system.svc.cluster.local",
			"wildcard": map[string]any{"enable": false, "los": []any{}, "ips": []any{map[string]any{"ipv4": "127.0.0.2"}}},
		}},
		{"fsm.tracing", "spec.observability.tracing", map[string]any{
			"enable": true, "address": "jaeger.fsm-system.svc.cluster.local", "port": int64(9412),
			"endpoint": "/api/v2/spans", "sampledFraction": "0.2",
		}},
		// fsm.meshConfig.fsmLogLevel is not set: FSM's key decides.
		{"fsm.controllerLogLevel", "spec.observability.fsmLogLevel", "warn"},
		// Top level, as in FSM's chart; the uid stays fsm.meshConfig.clusterUID.
		{"clusterSet", "spec.clusterSet", map[string]any{
			"isManaged": true, "uid": "3f1c2a9e-8b7d-4c6e-9f00-1234567890ab", "region": "eu", "zone": "eu-west-1",
			"group": "edge", "name": "cluster-1", "controlPlaneUID": "cp-1", "properties": []any{},
		}},
		// port and containerPort are bind and listen; fsmGateway is not enabled.
		{"fsm.fsmIngress", "spec.ingress", map[string]any{
			"enabled": true, "namespaced": true, "type": "NodePort", "logLevel": "debug",
			"http": map[string]any{"enabled": false, "bind": int64(8080), "listen": int64(9000), "nodePort": int64(31080)},
			"tls": map[string]any{"enabled": true, "bind": int64(8444), "listen": int64(9443), "nodePort": int64(31443), "mTLS": true,
				"sslPassthrough": map[string]any{"enabled": true, "upstreamPort": int64(8443)}},
		}},
		{"fsm.fsmGateway.logLevel", "spec.gatewayAPI", map[string]any{"enabled": false, "logLevel": "warn"}},
		{"fsm.serviceLB", "spec.serviceLB", map[string]any{"enabled": true, "image": "reg.example.com/klipper-lb:v0.5.0"}},
		{"fsm.flb", "spec.flb", map[string]any{"enabled": true, "strictMode": true, "upstreamMode": "NodePort", "secretName": "my-flb-secret"}},
		{"fsm.egressGateway", "spec.egressGateway", map[string]any{
			"enabled": true, "logLevel": "debug", "mode": "sock5", "port": int64(1081), "adminPort": int64(6061), "replicas": int64(3),
		}},
		{"fsm.repoServer.image", "spec.misc.repoServerImage", "reg.example.com/pipy-repo:1.5.12"},
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(mc.Object, splitPath(tc.path)...)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: MeshConfig %s = %#v, want %#v (FSM's chart writes it there)", tc.value, tc.path, got, tc.want)
		}
	}
}

// TestFSMMeshConfigKeysPrecedence: our fsm.meshConfig.fsmLogLevel wins over
// FSM's controllerLogLevel when set; tracing writes its collector only when
// enabled, as FSM's preset does; an empty list or false given replaces
// FSM's default, as Helm's merge does.
func TestFSMMeshConfigKeysPrecedence(t *testing.T) {
	for _, tc := range []struct {
		values string
		path   string
		want   any
	}{
		{"fsm: {meshConfig: {fsmLogLevel: error}, controllerLogLevel: trace}", "spec.observability.fsmLogLevel", "error"},
		{"fsm: {controllerLogLevel: disabled}", "spec.observability.fsmLogLevel", "disabled"},
		{"{}", "spec.observability.fsmLogLevel", "info"},
		{"fsm: {tracing: {enable: false, address: jaeger, sampledFraction: '0.5'}}", "spec.observability.tracing", map[string]any{"enable": false}},
		{"fsm: {tracing: {enable: true}}", "spec.observability.tracing", map[string]any{"enable": true, "port": int64(9411), "address": "", "endpoint": "/api/v2/spans"}},
		{"fsm: {localDNSProxy: {enable: true, wildcard: {enable: true, ips: []}}}", "spec.sidecar.localDNSProxy.wildcard", map[string]any{"enable": true, "los": []any{}, "ips": []any{}}},
		// An IPv6 cluster's kube-dns by address: FSM's DNS proxy dials
		// "<value>:53", an address and port with the brackets.
		{"fsm: {localDNSProxy: {primaryUpstreamDNSServerIPAddr: '[fd00:10:96::a]'}}", "spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr", "[fd00:10:96::a]"},
		{"fsm: {sidecar: {holdApplicationUntilProxyStarts: null}}", "spec.sidecar.holdApplicationUntilProxyStarts", true},
		// A chain given replaces FSM's whole (Helm's list merge); disable
		// defaults to false, as FSM's bootstrap decodes it.
		{"fsm: {pluginChains: {outbound-tcp: [{plugin: modules/outbound-tcp-default, priority: 100}]}}", "spec.pluginChains.outbound-tcp",
			[]any{map[string]any{"plugin": "modules/outbound-tcp-default", "priority": int64(100), "disable": false}}},
		{"fsm: {pluginChains: {outbound-tcp: []}}", "spec.pluginChains.outbound-tcp", []any{}},
		{"fsm: {pluginChains: {inbound-http: [{plugin: modules/inbound-http-default, priority: 100, disable: true}]}}", "spec.pluginChains.inbound-http",
			[]any{map[string]any{"plugin": "modules/inbound-http-default", "priority": int64(100), "disable": true}}},
		{"fsm: {remoteLogging: {enable: true, address: logs.example.com, authorization: Basic x}}", "spec.observability.remoteLogging", map[string]any{
			"enable": true, "secretName": "fsm-remote-logging-secret", "level": int64(2), "port": int64(30514),
			"address": "logs.example.com", "endpoint": "", "authorization": "Basic x", "sampledFraction": "1.0",
		}},
		{"fsm: {xnetDNSProxy: {enable: true, upstreams: [{name: coredns, namespace: kube-system, port: 53}, {ip: 10.96.0.10}]}}", "spec.sidecar.xnetDNSProxy", map[string]any{
			"enable": true, "upstreams": []any{
				map[string]any{"name": "coredns", "namespace": "kube-system", "port": int64(53)},
				map[string]any{"ip": "10.96.0.10", "port": int64(0)},
			},
		}},
		{"fsm: {warmup: {enable: true, duration: 2m}}", "spec.warmup", map[string]any{
			"enable": true, "duration": "2m", "minWeight": int64(10), "maxWeight": int64(100), "aggression": int64(1),
		}},
		{"fsm: {maxDataPlaneConnections: 1000000, configResyncInterval: 90s}", "spec.sidecar.maxDataPlaneConnections", int64(1000000)},
		// FSM's rule: an ingress and a gateway both enabled, neither is.
		{"fsm: {fsmGateway: {enabled: true}}", "spec.gatewayAPI", map[string]any{"enabled": true, "logLevel": "info"}},
		{"fsm: {fsmGateway: {enabled: true}}", "spec.ingress.enabled", false},
		{"fsm: {fsmIngress: {enabled: true}}", "spec.ingress.enabled", true},
		{"fsm: {fsmIngress: {enabled: true}, fsmGateway: {enabled: true}}", "spec.ingress.enabled", false},
		{"fsm: {fsmIngress: {enabled: true}, fsmGateway: {enabled: true}}", "spec.gatewayAPI.enabled", false},
		// The keys not given keep FSM's defaults, as Helm merges FSM's values.yaml.
		{"fsm: {fsmIngress: {tls: {enabled: true}}}", "spec.ingress.tls", map[string]any{
			"enabled": true, "bind": int64(443), "listen": int64(8443), "nodePort": int64(30607), "mTLS": false,
			"sslPassthrough": map[string]any{"enabled": false, "upstreamPort": int64(443)},
		}},
		// FSM writes 0 for a null nodePort, which the CRD refuses (1-65535).
		{"fsm: {fsmIngress: {http: {nodePort: null}}}", "spec.ingress.http.nodePort", int64(30508)},
		{"fsm: {egressGateway: {replicaCount: 0}}", "spec.egressGateway.replicas", int64(0)},
		{"clusterSet: {name: cluster-2}", "spec.clusterSet.region", "default"},
		// Component images: an empty registry is fsm.image.registry (FSM's
		// helpers); an unset one is FSM's default flomesh, as Helm merges it.
		{"fsm: {image: {registry: mirror.example.com}, serviceLB: {image: {registry: ''}}}", "spec.serviceLB.image", "mirror.example.com/mirrored-klipper-lb:v0.4.7"},
		{"fsm: {image: {registry: mirror.example.com}, serviceLB: {image: {name: klipper-lb, tag: v0.5.0}}}", "spec.serviceLB.image", "flomesh/klipper-lb:v0.5.0"},
		{"fsm: {image: {registry: mirror.example.com}, repoServer: {image: {registry: '', name: pipy-repo, tag: 1.5.12}}}", "spec.misc.repoServerImage", "mirror.example.com/pipy-repo:1.5.12"},
		{"fsm: {image: {registry: mirror.example.com}}", "spec.misc.repoServerImage", "flomesh/pipy-repo:1.5.14"},
		{"fsm: {serviceLB: {image: {tag: 20240101}}}", "spec.serviceLB.image", "flomesh/mirrored-klipper-lb:20240101"},
		{"fsm: {serviceLB: {image: {registry: null, name: null, tag: null}}}", "spec.serviceLB.image", "flomesh/mirrored-klipper-lb:v0.4.7"},
		{"fsm: {image: {tag: 20240101}}", "spec.image.tag", "20240101"},
		{"fsm: {image: {registry: reg.example.com, tag: v9, name: {fsmGateway: my-gateway}}}", "spec.image", map[string]any{
			"registry": "reg.example.com", "tag": "v9", "pullPolicy": "IfNotPresent",
			"name": map[string]any{
				"fsmController": "fsm-controller", "fsmInjector": "fsm-injector", "fsmSidecarInit": "fsm-sidecar-init",
				"fsmBootstrap": "fsm-bootstrap", "fsmCRDs": "fsm-crds", "fsmPreinstall": "fsm-preinstall",
				"fsmHealthcheck": "fsm-healthcheck", "fsmXnetmgmt": "fsm-xnetmgmt", "fsmConnector": "fsm-connector",
				"fsmIngress": "fsm-ingress", "fsmGateway": "my-gateway", "fsmCurl": "fsm-curl",
			},
			"digest": map[string]any{
				"fsmController": "", "fsmInjector": "", "fsmSidecarInit": "", "fsmBootstrap": "", "fsmCRDs": "",
				"fsmPreinstall": "", "fsmHealthcheck": "", "fsmXnetmgmt": "", "fsmConnector": "", "fsmIngress": "",
				"fsmGateway": "", "fsmCurl": "",
			},
		}},
	} {
		t.Run(tc.values, func(t *testing.T) {
			mc := mustFind(t, mustRender(t, tc.values), "MeshConfig", "fsm-mesh-config")
			strictMeshConfig(t, mc)
			got, _, _ := unstructured.NestedFieldNoCopy(mc.Object, splitPath(tc.path)...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MeshConfig %s = %#v, want %#v", tc.path, got, tc.want)
			}
		})
	}
}

// TestMeshConfigIsFSMs: the MeshConfig the chart creates, with its default
// values and with FSM v1.5.1's own values file, is the one FSM's install
// stores, field for field. FSM's control plane reads all of it: empty
// pluginChains, say, leave every sidecar without a routing plugin. The only
// differences are listed with their reasons.
func TestMeshConfigIsFSMs(t *testing.T) {
	data, err := os.ReadFile(fsmPresetFile)
	if err != nil {
		t.Fatal(err)
	}
	preset := map[string]any{}
	if err := yaml.Unmarshal(data, &preset); err != nil {
		t.Fatal(err)
	}
	want := normalize(t, preset["spec"]).(map[string]any)
	// What the apiserver adds to FSM's object on create (the CRD's defaults,
	// the reference's header lists them) and what FSM's typed client drops
	// as omitempty zero values: the stored object has them.
	for path, v := range map[string]any{
		"connector.lb.type":                             "ActiveActive",
		"warmup.aggression":                             float64(1),
		"sidecar.localDNSProxy.generateIPv6BasedOnIPv4": false,
		"sidecar.maxDataPlaneConnections":               float64(0),
		"traffic.serviceAccessNames": map[string]any{
			"mustWithServicePort": false, "withTrustDomain": true, "mustWithNamespace": true,
			"cloud": map[string]any{"withNamespace": true},
		},
	} {
		if err := unstructured.SetNestedField(want, v, splitPath(path)...); err != nil {
			t.Fatal(err)
		}
	}
	// The uid is random per install, on both sides.
	unstructured.RemoveNestedField(want, "clusterSet", "uid")
	// The reference was rendered from FSM's chart 1.6.0; FSM v1.5.1's tag is
	// 1.5.1 (asserted below).
	unstructured.RemoveNestedField(want, "image", "tag")
	// Not written on purpose: with it the MeshConfig, which only the first
	// install writes, would outrank fsm.sidecar.image (--sidecar-image) on
	// every later upgrade.
	unstructured.RemoveNestedField(want, "sidecar", "sidecarImage")

	// The reference's repo server image is FSM's chart 1.6.0's, this chart's
	// default; FSM v1.5.1's values file names pipy-repo 1.5.12, which FSM's
	// chart writes (asserted below).
	wantRepoImage, _, _ := unstructured.NestedString(want, "misc", "repoServerImage")
	unstructured.RemoveNestedField(want, "misc", "repoServerImage")

	fsmValues := readValuesFile(t, fsmValuesFile)
	for _, tc := range []struct {
		name      string
		render    func() (*charttest.Rendered, error)
		repoImage string
	}{
		{"default values", func() (*charttest.Rendered, error) { return charttest.Render(ns, mustValues(t, "")) }, wantRepoImage},
		{"FSM's values file", func() (*charttest.Rendered, error) { return charttest.Render(ns, fsmValues) }, "flomesh/pipy-repo:1.5.12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.render()
			if err != nil {
				t.Fatal(err)
			}
			mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
			strictMeshConfig(t, mc)
			got := normalize(t, mc.Object["spec"]).(map[string]any)
			if tag, _, _ := unstructured.NestedString(got, "image", "tag"); tag != "1.5.1" {
				t.Errorf("spec.image.tag = %q, want FSM v1.5.1's 1.5.1", tag)
			}
			if img, _, _ := unstructured.NestedString(got, "misc", "repoServerImage"); img != tc.repoImage {
				t.Errorf("spec.misc.repoServerImage = %q, want %q", img, tc.repoImage)
			}
			unstructured.RemoveNestedField(got, "clusterSet", "uid")
			unstructured.RemoveNestedField(got, "image", "tag")
			unstructured.RemoveNestedField(got, "misc", "repoServerImage")
			// FSM's bootstrap stores the duration as Go prints it.
			if d, _, _ := unstructured.NestedString(got, "warmup", "duration"); d != "" {
				pd, err := time.ParseDuration(d)
				if err != nil {
					t.Fatalf("warmup.duration %q: %v", d, err)
				}
				_ = unstructured.SetNestedField(got, pd.String(), "warmup", "duration")
			}
			for _, d := range specDiff("spec", got, want) {
				t.Errorf("%s (FSM's install stores the latter)", d)
			}
		})
	}
}

// specDiff lists the leaf paths where a and b differ.
func specDiff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if reflect.DeepEqual(a, b) {
			return nil
		}
		return []string{fmt.Sprintf("%s = %v, not %v", path, a, b)}
	}
	keys := map[string]bool{}
	for k := range am {
		keys[k] = true
	}
	for k := range bm {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		out = append(out, specDiff(path+"."+k, am[k], bm[k])...)
	}
	sort.Strings(out)
	return out
}

// TestYAMLStringsStayStrings: YAML 1.1 (sigs.k8s.io/yaml, what Helm and the
// apiserver clients decode with) reads a bare off, no, on or yes as a
// boolean and 1 as a number, and a ": " or " #" inside a plain scalar
// changes the document. Every value the schema accepts as a string must
// reach the objects as that string: the CRD (spec.sidecar.logLevel is type
// string) and the typed objects (a namespace, a label value, an argument)
// refuse anything else, so each object is decoded strictly into its type.
func TestYAMLStringsStayStrings(t *testing.T) {
	r := mustRender(t, `
fsm:
  meshName: "1"
  fsmNamespace: "off"
  sidecar: {sidecarLogLevel: "off"}
  certificateProvider: {kind: vault}
  vault: {host: "yes", role: "1.10", token: "no"}
  webhooks:
    priorityClassName: "yes"
    networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.0/28]}
    monitoring: {grafanaDashboard: {enabled: true}}
`)
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
	if got, _, _ := unstructured.NestedFieldNoCopy(mc.Object, "spec", "sidecar", "logLevel"); got != "off" {
		t.Errorf("fsm.sidecar.sidecarLogLevel \"off\": MeshConfig spec.sidecar.logLevel = %#v (%T), want the string \"off\"", got, got)
	}
	strictMeshConfig(t, mc)
	for _, o := range r.All() {
		what := o.GetKind() + " " + o.GetName()
		// kube-system holds the converters' conversion Lease and its RBAC.
		if ns, found, _ := unstructured.NestedFieldNoCopy(o.Object, "metadata", "namespace"); found && ns != "off" && ns != "kube-system" {
			t.Errorf("%s: metadata.namespace = %#v, want \"off\"", what, ns)
		}
		if o.GetKind() == "MeshConfig" {
			continue
		}
		into, err := clientgoscheme.Scheme.New(o.GroupVersionKind())
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		js, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(js, into); err != nil {
			t.Errorf("%s does not decode as %s: %v", what, o.GroupVersionKind(), err)
		}
	}
	d := mustFind(t, r, "Deployment", "fsm-webhooks")
	if got := nested(t, d, "spec", "template", "spec", "priorityClassName"); got != "yes" {
		t.Errorf("priorityClassName = %#v, want \"yes\"", got)
	}
	for flag, want := range map[string]string{"vault-host": "yes", "vault-role": "1.10", "mesh-name": "1", "fsm-namespace": "off"} {
		if got, _ := argValue(t, d, flag); got != want {
			t.Errorf("--%s=%q, want %q", flag, got, want)
		}
	}
}
