package meshconfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// presetPath is the apis engineer's valid v1alpha3 preset; the validator must
// accept it as written.
var presetPath = filepath.Join("..", "..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml")

func preset(t testing.TB) map[string]any {
	t.Helper()
	b, err := os.ReadFile(presetPath)
	if err != nil {
		t.Fatalf("reading preset: %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding preset: %v", err)
	}
	return m
}

// set writes v at a dotted path ("spec.sidecar.logLevel"), creating objects.
func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

type kv struct {
	path string
	v    any
}

func build(t testing.TB, base map[string]any, sets ...kv) []byte {
	t.Helper()
	for _, s := range sets {
		set(base, s.path, s.v)
	}
	b, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func messages(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPresetIsValid(t *testing.T) {
	for _, v := range Versions {
		r := Validate(v, build(t, preset(t)))
		if len(r.Errors) != 0 {
			t.Errorf("%s: preset denied: %v", v, r.Errors)
		}
		wantWarn := 0
		if IsDeprecatedVersion(v) {
			wantWarn = 1
		}
		if len(r.Warnings) != wantWarn {
			t.Errorf("%s: warnings %q, want %d", v, r.Warnings, wantWarn)
		}
	}
}

// TestFSMPresetIsValid: the MeshConfig FSM's own install stores, unchanged
// (../shared/fsm-reference beside the checkout; missing is a failure).
func TestFSMPresetIsValid(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "fsm-reference", "meshconfig-preset-v1alpha3.yaml"))
	if err != nil {
		t.Fatalf("FSM reference corpus (<repo root>/../shared/fsm-reference): %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if r := Validate(V1alpha3, build(t, m)); len(r.Errors) != 0 || len(r.Warnings) != 0 {
		t.Errorf("FSM's preset: errors %v, warnings %q; want neither", r.Errors, r.Warnings)
	}
}

// ifNameRule is the start of rules.InterfaceName's message.
const ifNameRule = "must be a Linux network interface name (1-15 bytes, not '.' or '..', no '/', ':', whitespace, quotes, '$', '`' or '\\'): "

func TestValidateRules(t *testing.T) {
	cases := []struct {
		name    string
		version string
		sets    []kv
		want    []string // exact messages, in order; empty = valid
	}{
		// sidecar.logLevel
		{name: "sidecar log level warning ok", sets: []kv{{"spec.sidecar.logLevel", "warning"}}},
		{name: "sidecar log level off ok", sets: []kv{{"spec.sidecar.logLevel", "off"}}},
		{name: "sidecar log level unknown", sets: []kv{{"spec.sidecar.logLevel", "verbose"}}, want: []string{
			`spec.sidecar.logLevel: Unsupported value: "verbose": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`}},
		// control-plane log levels
		{name: "fsm log level warning is not zerolog", sets: []kv{{"spec.observability.fsmLogLevel", "warning"}}, want: []string{
			`spec.observability.fsmLogLevel: Unsupported value: "warning": supported values: "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"`}},
		{name: "ingress gatewayAPI egressGateway log levels", sets: []kv{
			{"spec.ingress.logLevel", "loud"}, {"spec.gatewayAPI.logLevel", "Info"}, {"spec.egressGateway.logLevel", "disabled"}}, want: []string{
			`spec.ingress.logLevel: Unsupported value: "loud": supported values: "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"`,
			`spec.gatewayAPI.logLevel: Unsupported value: "Info": supported values: "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"`}},
		// TLS versions
		{name: "tls min<=max ok", sets: []kv{{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_2"}, {"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_3"}}},
		{name: "tls equal ok", sets: []kv{{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_2"}, {"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_2"}}},
		{name: "tls auto ok", sets: []kv{{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_3"}, {"spec.sidecar.tlsMaxProtocolVersion", "TLS_AUTO"}}},
		{name: "tls min > max", sets: []kv{{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_3"}, {"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_1"}}, want: []string{
			`spec.sidecar.tlsMinProtocolVersion: Invalid value: "TLSv1_3": tlsMinProtocolVersion must be less than or equal to tlsMaxProtocolVersion (TLSv1_1)`}},
		{name: "tls unknown version", sets: []kv{{"spec.sidecar.tlsMinProtocolVersion", "TLSv1.2"}, {"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_0"}}, want: []string{
			`spec.sidecar.tlsMinProtocolVersion: Unsupported value: "TLSv1.2": supported values: "TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"`}},
		// cipher suites / curves
		{name: "cipher suites ok", sets: []kv{{"spec.sidecar.cipherSuites", []any{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}}, {"spec.sidecar.ecdhCurves", []any{"X25519", "P-256"}}}},
		{name: "cipher suites empty and duplicate", sets: []kv{
			{"spec.sidecar.cipherSuites", []any{"ECDHE-RSA-AES128-GCM-SHA256", "", "ECDHE-RSA-AES128-GCM-SHA256"}},
			{"spec.sidecar.ecdhCurves", []any{"P-256", " ", "P-256"}}}, want: []string{
			`spec.sidecar.cipherSuites[1]: Invalid value: "": must be a non-empty name`,
			`spec.sidecar.cipherSuites[2]: Duplicate value: "ECDHE-RSA-AES128-GCM-SHA256"`,
			`spec.sidecar.ecdhCurves[1]: Invalid value: " ": must be a non-empty name`,
			`spec.sidecar.ecdhCurves[2]: Duplicate value: "P-256"`}},
		// ports
		{name: "port lists ok", sets: []kv{{"spec.traffic.outboundPortExclusionList", []any{1, 65535}}, {"spec.traffic.inboundPortExclusionList", []any{8080}}}},
		{name: "port lists out of range", sets: []kv{{"spec.traffic.outboundPortExclusionList", []any{0, 443, 65536}}, {"spec.traffic.inboundPortExclusionList", []any{-1}}}, want: []string{
			`spec.traffic.outboundPortExclusionList[0]: Invalid value: 0: should be greater than or equal to 1`,
			`spec.traffic.outboundPortExclusionList[2]: Invalid value: 65536: should be less than or equal to 65535`,
			`spec.traffic.inboundPortExclusionList[0]: Invalid value: -1: should be greater than or equal to 1`}},
		{name: "ports above int16 are fine", sets: []kv{{"spec.observability.tracing.port", 40000}, {"spec.repoServer.port", 65535}, {"spec.observability.remoteLogging.port", 32768}}},
		{name: "single ports out of range", sets: []kv{
			{"spec.observability.tracing.port", 70000}, {"spec.observability.remoteLogging.port", -5}, {"spec.repoServer.port", 65536},
			{"spec.ingress.http.nodePort", 0}, {"spec.ingress.tls.sslPassthrough.upstreamPort", 70000},
			{"spec.egressGateway.adminPort", 0}, {"spec.connector.viaGateway.egressGRPCPort", 65536}}, want: []string{
			`spec.repoServer.port: Invalid value: 65536: should be less than or equal to 65535`,
			`spec.observability.tracing.port: Invalid value: 70000: should be less than or equal to 65535`,
			`spec.observability.remoteLogging.port: Invalid value: -5: should be greater than or equal to 1`,
			`spec.ingress.http.nodePort: Invalid value: 0: should be greater than or equal to 1`,
			`spec.ingress.tls.sslPassthrough.upstreamPort: Invalid value: 70000: should be less than or equal to 65535`,
			`spec.egressGateway.adminPort: Invalid value: 0: should be greater than or equal to 1`,
			`spec.connector.viaGateway.egressGRPCPort: Invalid value: 65536: should be less than or equal to 65535`}},
		{name: "enabled collector needs a port", sets: []kv{{"spec.observability.tracing.enable", true}, {"spec.observability.tracing.port", nil}}, want: []string{
			`spec.observability.tracing.port: Invalid value: 0: should be greater than or equal to 1`}},
		{name: "enabled ext authz needs a port", sets: []kv{{"spec.traffic.inboundExternalAuthorization.enable", true}}, want: []string{
			`spec.traffic.inboundExternalAuthorization.port: Invalid value: 0: should be greater than or equal to 1`}},
		// CIDRs
		{name: "cidrs ok: v4 and v6 excluded, v4 included", sets: []kv{{"spec.traffic.outboundIPRangeExclusionList", []any{"10.96.0.0/12", "fd00::/8", "::/0"}}, {"spec.traffic.outboundIPRangeInclusionList", []any{"10.0.0.0/8", "192.168.0.0/16"}}}},
		{name: "v6 inclusion refused", sets: []kv{{"spec.traffic.outboundIPRangeInclusionList", []any{"10.0.0.0/8", "2001:db8::/32", "::/0"}}}, want: []string{
			`spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: "2001:db8::/32": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`,
			`spec.traffic.outboundIPRangeInclusionList[2]: Invalid value: "::/0": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`}},
		{name: "v4-mapped ranges refused in both lists", sets: []kv{
			{"spec.traffic.outboundIPRangeExclusionList", []any{"::ffff:10.0.0.0/104"}}, {"spec.traffic.outboundIPRangeInclusionList", []any{"::ffff:192.168.1.1/128"}}}, want: []string{
			`spec.traffic.outboundIPRangeExclusionList[0]: Invalid value: "::ffff:10.0.0.0/104": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 10.0.0.0/8`,
			`spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "::ffff:192.168.1.1/128": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 192.168.1.1/32`}},
		{name: "cidr without prefix", sets: []kv{{"spec.traffic.outboundIPRangeExclusionList", []any{"10.0.0.0/8", "10.0.0.0"}}}, want: []string{
			`spec.traffic.outboundIPRangeExclusionList[1]: Invalid value: "10.0.0.0": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.0/32`}},
		{name: "cidr garbage v6 and spaces", sets: []kv{{"spec.traffic.outboundIPRangeInclusionList", []any{"fd00::/129", " 10.0.0.0/8", "x"}}}, want: []string{
			`spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "fd00::/129": must be a CIDR such as 10.0.0.0/8 or fd00::/8`,
			`spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: " 10.0.0.0/8": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.0/8`,
			`spec.traffic.outboundIPRangeInclusionList[2]: Invalid value: "x": must be a CIDR such as 10.0.0.0/8 or fd00::/8`}},
		{name: "included range inside excluded range", sets: []kv{
			{"spec.traffic.outboundIPRangeExclusionList", []any{"192.168.0.0/16", "10.0.0.0/8"}},
			{"spec.traffic.outboundIPRangeInclusionList", []any{"172.16.0.0/12", "10.1.0.0/16", "fd00::/8"}}}, want: []string{
			`spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: "10.1.0.0/16": overlaps spec.traffic.outboundIPRangeExclusionList[1] ("10.0.0.0/8"): exclusion wins, so this range is never intercepted`,
			`spec.traffic.outboundIPRangeInclusionList[2]: Invalid value: "fd00::/8": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`}},
		{name: "same range included and excluded (host bits)", sets: []kv{
			{"spec.traffic.outboundIPRangeExclusionList", []any{"10.1.2.3/8", "fd00::/8"}},
			{"spec.traffic.outboundIPRangeInclusionList", []any{"10.0.0.0/8"}}}, want: []string{
			`spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "10.0.0.0/8": overlaps spec.traffic.outboundIPRangeExclusionList[0] ("10.1.2.3/8"): exclusion wins, so this range is never intercepted`}},
		// durations
		{name: "durations ok", sets: []kv{{"spec.sidecar.configResyncInterval", "1m30s"}, {"spec.certificate.serviceCertValidityDuration", "87600h"}, {"spec.traffic.inboundExternalAuthorization.timeout", "1s"}}},
		{name: "durations bad", sets: []kv{
			{"spec.sidecar.configResyncInterval", "5 minutes"}, {"spec.certificate.serviceCertValidityDuration", "0s"},
			{"spec.certificate.ingressGateway", map[string]any{"validityDuration": "1d", "subjectAltNames": []any{"a"}, "secret": map[string]any{"name": "a", "namespace": "b"}}},
			{"spec.traffic.inboundExternalAuthorization.timeout", "-1s"}, {"spec.warmup.duration", "soon"}}, want: []string{
			`spec.sidecar.configResyncInterval: Invalid value: "5 minutes": must be a duration such as 90s, 1m30s or 24h`,
			`spec.traffic.inboundExternalAuthorization.timeout: Invalid value: "-1s": must not be negative`,
			`spec.warmup.duration: Invalid value: "soon": must be a duration such as 90s, 1m30s or 24h`,
			`spec.certificate.serviceCertValidityDuration: Invalid value: "0s": must be longer than 0s`,
			`spec.certificate.ingressGateway.validityDuration: Invalid value: "1d": must be a duration such as 90s, 1m30s or 24h`}},
		// certKeyBitSize
		{name: "key size 4096 ok", sets: []kv{{"spec.certificate.certKeyBitSize", 4096}}},
		{name: "key size 1024", sets: []kv{{"spec.certificate.certKeyBitSize", 1024}}, want: []string{
			`spec.certificate.certKeyBitSize: Invalid value: 1024: should be greater than or equal to 2048`}},
		{name: "key size 8192", sets: []kv{{"spec.certificate.certKeyBitSize", 8192}}, want: []string{
			`spec.certificate.certKeyBitSize: Invalid value: 8192: should be less than or equal to 4096`}},
		{name: "key size 2560 ok (issued inline)", sets: []kv{{"spec.certificate.certKeyBitSize", 2560}}},
		// repoServer.ipaddr (the host of every sidecar's repo URL)
		{name: "repo server host name ok", sets: []kv{{"spec.repoServer.ipaddr", "Repo.Example.com"}}},
		{name: "repo server address bad", sets: []kv{{"spec.repoServer.ipaddr", "repo server"}}, want: []string{
			`spec.repoServer.ipaddr: Invalid value: "repo server": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`}},
		// networkInterfaceExclusionList (Linux interface names the fsm-init script can carry)
		{name: "interfaces ok", sets: []kv{{"spec.traffic.networkInterfaceExclusionList", []any{"eth1", "net1.100", "veth+", "fifteen-bytes-x"}}}},
		{name: "interfaces bad", sets: []kv{{"spec.traffic.networkInterfaceExclusionList", []any{"sixteen-bytes-xx", "", "..", "a/b", "eth0 -j ACCEPT", "e$(id)"}}}, want: []string{
			`spec.traffic.networkInterfaceExclusionList[0]: Invalid value: "sixteen-bytes-xx": ` + ifNameRule + `16 bytes`,
			`spec.traffic.networkInterfaceExclusionList[1]: Invalid value: "": ` + ifNameRule + `empty`,
			`spec.traffic.networkInterfaceExclusionList[2]: Invalid value: "..": ` + ifNameRule + `reserved name`,
			`spec.traffic.networkInterfaceExclusionList[3]: Invalid value: "a/b": ` + ifNameRule + `contains '/'`,
			`spec.traffic.networkInterfaceExclusionList[4]: Invalid value: "eth0 -j ACCEPT": ` + ifNameRule + `contains the whitespace or control byte 0x20`,
			`spec.traffic.networkInterfaceExclusionList[5]: Invalid value: "e$(id)": ` + ifNameRule + `contains '$'`}},
		// resources of the injected containers
		{name: "resources ok", sets: []kv{
			{"spec.sidecar.resources", map[string]any{"limits": map[string]any{"cpu": "2", "memory": "1Gi"}, "requests": map[string]any{"cpu": 0.5, "memory": "64Mi"}}},
			{"spec.sidecar.initResources", map[string]any{"limits": map[string]any{"example.com/dev": 1}, "requests": map[string]any{"example.com/dev": "1"}}}}},
		{name: "resources bad", sets: []kv{
			{"spec.sidecar.resources", map[string]any{"limits": map[string]any{"cpu": "100m"}, "requests": map[string]any{"cpu": "1"}}},
			{"spec.sidecar.initResources", map[string]any{"limits": map[string]any{"memory": "lots"}}},
			{"spec.sidecar.healthcheckResources", map[string]any{"limits": map[string]any{"gpu": "1"}, "claims": []any{map[string]any{"name": "c"}}}}}, want: []string{
			`spec.sidecar.resources.requests[cpu]: Invalid value: "1": must be less than or equal to the cpu limit (100m)`,
			`spec.sidecar.initResources.limits[memory]: Invalid value: "lots": must be a quantity such as 500m, 2 or 64Mi`,
			`spec.sidecar.healthcheckResources.claims[0]: Forbidden: claim "c": the injected container would need it in every pod's spec.resourceClaims, and pods without it would be refused`,
			`spec.sidecar.healthcheckResources.limits[gpu]: Invalid value: "gpu": must be cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource such as example.com/device`}},
		// quantities whose parsing costs more than any real value's (the
		// first about 1.5 s, each further exponent digit 20-40 times more)
		{name: "resources costly", sets: []kv{
			{"spec.sidecar.resources", map[string]any{"limits": map[string]any{"cpu": "1e-9999999"}}},
			{"spec.sidecar.initResources", map[string]any{"requests": map[string]any{"memory": "1" + strings.Repeat("0", 64)}}}}, want: []string{
			`spec.sidecar.resources.limits[cpu]: Invalid value: "1e-9999999": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`,
			`spec.sidecar.initResources.requests[memory]: Invalid value: "1` + strings.Repeat("0", 64) + `": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`}},
		// sampledFraction
		{name: "fractions ok", sets: []kv{{"spec.observability.tracing.sampledFraction", "0"}, {"spec.observability.remoteLogging.sampledFraction", "1"}}},
		{name: "fractions bad", sets: []kv{{"spec.observability.tracing.sampledFraction", "1.5"}, {"spec.observability.remoteLogging.sampledFraction", "NaN"}}, want: []string{
			`spec.observability.tracing.sampledFraction: Invalid value: "1.5": must be a number between 0 and 1, such as 0.5`,
			`spec.observability.remoteLogging.sampledFraction: Invalid value: "NaN": must be a number between 0 and 1, such as 0.5`}},
		{name: "v1alpha1 numeric fraction ok", version: V1alpha1, sets: []kv{{"spec.observability.tracing.sampledFraction", 0.25}}},
		{name: "v1alpha1 numeric fraction bad", version: V1alpha1, sets: []kv{{"spec.observability.tracing.sampledFraction", -0.5}}, want: []string{
			`spec.observability.tracing.sampledFraction: Invalid value: "-0.5": must be a number between 0 and 1, such as 0.5`}},
		// enums
		{name: "enums bad", sets: []kv{
			{"spec.traffic.interceptionMode", "Sidecar"}, {"spec.traffic.serviceAccessMode", "Mixed"}, {"spec.sidecar.localProxyMode", "podIP"},
			{"spec.ingress.type", "ClusterIP"}, {"spec.flb.upstreamMode", "Pod"}, {"spec.egressGateway.mode", "socks5"},
			{"spec.connector.lb.type", "RoundRobin"}, {"spec.image.pullPolicy", "Sometimes"}}, want: []string{
			`spec.sidecar.localProxyMode: Unsupported value: "podIP": supported values: "Localhost", "PodIP"`,
			`spec.traffic.interceptionMode: Unsupported value: "Sidecar": supported values: "NodeLevel", "PodLevel"`,
			`spec.traffic.serviceAccessMode: Unsupported value: "Mixed": supported values: "ip", "domain", "mixed"`,
			`spec.ingress.type: Unsupported value: "ClusterIP": supported values: "LoadBalancer", "NodePort"`,
			`spec.flb.upstreamMode: Unsupported value: "Pod": supported values: "NodePort", "Endpoint"`,
			`spec.egressGateway.mode: Unsupported value: "socks5": supported values: "http2tunnel", "sock5"`,
			`spec.image.pullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"`,
			`spec.connector.lb.type: Unsupported value: "RoundRobin": supported values: "ActiveActive", "FailOver"`}},
		// images
		{name: "images ok", sets: []kv{
			{"spec.sidecar.sidecarImage", "flomesh/pipy:1.5.14"}, {"spec.serviceLB.image", "registry.example.com:5000/lb@sha256:" + strings.Repeat("a", 64)},
			{"spec.image.name", map[string]any{"controller": "fsm-controller"}}, {"spec.image.digest", map[string]any{"controller": "sha256:" + strings.Repeat("b", 64)}}}},
		{name: "images bad", sets: []kv{
			{"spec.sidecar.sidecarImage", "Flomesh/Pipy:1.5.14"}, {"spec.serviceLB.image", "lb:"}, {"spec.misc.repoServerImage", "repo@sha256:xyz"},
			{"spec.image.tag", "bad tag"}, {"spec.image.name", map[string]any{"controller": "FSM", "injector": "fsm-injector"}},
			{"spec.image.digest", map[string]any{"injector": "md5:0"}}}, want: []string{
			`spec.sidecar.sidecarImage: Invalid value: "Flomesh/Pipy:1.5.14": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format: repository name (Pipy) must be lowercase`,
			`spec.serviceLB.image: Invalid value: "lb:": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`,
			`spec.image.tag: Invalid value: "bad tag": must be an image tag such as v1.5.0 (letters, digits, '_', '.', '-'; at most 128 characters)`,
			`spec.image.name[controller]: Invalid value: "FSM": must make a container image reference with spec.image.registry, got "flomesh/FSM": invalid reference format: repository name (flomesh/FSM) must be lowercase`,
			`spec.image.digest[injector]: Invalid value: "md5:0": must be a digest such as sha256:<64 hex digits>`,
			`spec.misc.repoServerImage: Invalid value: "repo@sha256:xyz": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`}},
		{name: "registry bad", sets: []kv{{"spec.image.registry", "Bad Registry"}, {"spec.image.name", map[string]any{"controller": "fsm-controller"}}}, want: []string{
			`spec.image.registry: Invalid value: "Bad Registry": must be a registry and optional path such as flomesh or ghcr.io/flomesh-io`}},
		// warmup
		{name: "warmup bad", sets: []kv{{"spec.warmup.minWeight", 50}, {"spec.warmup.maxWeight", 20}, {"spec.warmup.aggression", 0}}, want: []string{
			`spec.warmup.minWeight: Invalid value: 50: minWeight must be less than or equal to maxWeight (20)`,
			`spec.warmup.aggression: Invalid value: 0: should be greater than or equal to 1`}},
		{name: "warmup aggression is a number", sets: []kv{{"spec.warmup.aggression", 1.5}}},
		{name: "warmup aggression below 1", sets: []kv{{"spec.warmup.aggression", 0.5}}, want: []string{
			`spec.warmup.aggression: Invalid value: 0.5: should be greater than or equal to 1`}},
		{name: "xnet dns upstream port 0 means 53, as FSM writes it", sets: []kv{
			{"spec.sidecar.xnetDNSProxy.upstreams", []any{map[string]any{"name": "fsm-controller", "port": 0}}}}},
		{name: "warmup range", sets: []kv{{"spec.warmup.maxWeight", 101}}, want: []string{
			`spec.warmup.maxWeight: Invalid value: 101: should be less than or equal to 100`}},
		// DNS
		{name: "dns addresses ok", sets: []kv{
			{"spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr", "10.96.0.10"}, {"spec.sidecar.localDNSProxy.secondaryUpstreamDNSServerIPAddr", "kube-dns.kube-system.svc.cluster.local."},
			{"spec.sidecar.localDNSProxy.wildcard.los", []any{map[string]any{"ipv4": "127.0.0.2", "ipv6": "::1"}}},
			// As FSM serves them: AAAA only, and the IPv4-mapped form FSM
			// writes for generateIPv6BasedOnIPv4.
			{"spec.sidecar.localDNSProxy.wildcard.ips", []any{map[string]any{"ipv4": "", "ipv6": "fd00::1"}, map[string]any{"ipv4": "127.0.0.2", "ipv6": "::ffff:127.0.0.2"}}},
			{"spec.sidecar.xnetDNSProxy.upstreams", []any{map[string]any{"name": "dns", "ip": "10.0.0.10", "port": 53}}}}},
		// An IPv6 cluster's kube-dns: FSM dials "[fd00:10:96::a]:53".
		{name: "dns upstream ipv6 in brackets", sets: []kv{
			{"spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr", "[fd00:10:96::a]"}}},
		{name: "dns addresses zoned", sets: []kv{
			{"spec.sidecar.localDNSProxy.wildcard.ips", []any{map[string]any{"ipv4": "", "ipv6": "fd00::1%eth0"}}},
			{"spec.sidecar.xnetDNSProxy.upstreams", []any{map[string]any{"name": "dns", "ip": "fd00::a%eth0"}}}}, want: []string{
			`spec.sidecar.localDNSProxy.wildcard.ips[0].ipv6: Invalid value: "fd00::1%eth0": must be an IPv6 address such as fd00::2, without a zone (%eth0)`,
			`spec.sidecar.xnetDNSProxy.upstreams[0].ip: Invalid value: "fd00::a%eth0": must be an IP address such as 10.96.0.10 or fd00::a, without a zone (%eth0)`}},
		{name: "dns addresses bad", sets: []kv{
			{"spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr", "8.8.8"},
			{"spec.sidecar.localDNSProxy.secondaryUpstreamDNSServerIPAddr", "fd00::a"},
			{"spec.sidecar.localDNSProxy.wildcard.ips", []any{map[string]any{"ipv4": "::1", "ipv6": "127.0.0.1"}, map[string]any{"ipv4": ""}}},
			{"spec.sidecar.localDNSProxy.db", []any{map[string]any{"dn": "a.b", "ips": []any{map[string]any{"ipv4": "1.2.3.4.5"}}}}},
			{"spec.sidecar.xnetDNSProxy.upstreams", []any{map[string]any{"name": "dns", "ip": "dns.local", "port": 65536}}}}, want: []string{
			`spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr: Invalid value: "8.8.8": must be an IPv4 address, an IPv6 address in brackets or a host name, such as 10.96.0.10, [fd00::a] or kube-dns.kube-system.svc.cluster.local`,
			`spec.sidecar.localDNSProxy.secondaryUpstreamDNSServerIPAddr: Invalid value: "fd00::a": FSM's DNS proxy forwards to "<value>:53", which for an IPv6 address is not an address and port: write it in brackets, [fd00::a]`,
			`spec.sidecar.localDNSProxy.wildcard.ips[0].ipv4: Invalid value: "::1": must be an IPv4 address such as 127.0.0.2`,
			`spec.sidecar.localDNSProxy.wildcard.ips[0].ipv6: Invalid value: "127.0.0.1": must be an IPv6 address such as fd00::2`,
			`spec.sidecar.localDNSProxy.wildcard.ips[1].ipv4: Required value: an IPv4 address such as 127.0.0.2, or an ipv6 for an entry that answers AAAA only`,
			`spec.sidecar.localDNSProxy.db[0].ips[0].ipv4: Invalid value: "1.2.3.4.5": must be an IPv4 address such as 127.0.0.2`,
			`spec.sidecar.xnetDNSProxy.upstreams[0].ip: Invalid value: "dns.local": must be an IP address such as 10.96.0.10 or fd00::a`,
			`spec.sidecar.xnetDNSProxy.upstreams[0].port: Invalid value: 65536: should be less than or equal to 65535`}},
		// counts
		{name: "negative counts", sets: []kv{{"spec.sidecar.maxDataPlaneConnections", -1}, {"spec.egressGateway.replicas", -1}}, want: []string{
			`spec.sidecar.maxDataPlaneConnections: Invalid value: -1: should be greater than or equal to 0`,
			`spec.egressGateway.replicas: Invalid value: -1: should be greater than or equal to 0`}},
		// integers the schema leaves unbounded but the Go types hold as int32
		// (TestIntegerFieldsFitTheirGoTypes walks them all); FSM reads
		// remoteLogging.level as a uint16
		{name: "int limits ok", sets: []kv{{"spec.observability.remoteLogging.level", 65535}, {"spec.egressGateway.replicas", 2147483647}}},
		{name: "beyond the Go types", sets: []kv{{"spec.observability.remoteLogging.level", 65536}, {"spec.egressGateway.replicas", 2147483648}}, want: []string{
			`spec.observability.remoteLogging.level: Invalid value: 65536: should be less than or equal to 65535`,
			`spec.egressGateway.replicas: Invalid value: 2147483648: should be less than or equal to 2147483647`}},
		{name: "remote logging level negative", version: V1alpha1, sets: []kv{{"spec.observability.remoteLogging.level", -1}}, want: []string{
			`spec.observability.remoteLogging.level: Invalid value: -1: should be greater than or equal to 0`}},
		// v1alpha2-only fields
		{name: "v1alpha2 sidecar drivers", version: V1alpha2, sets: []kv{
			{"spec.sidecar.sidecarDrivers", []any{map[string]any{"sidecarName": "pipy", "sidecarImage": "flomesh/pipy:1.5.14", "proxyServerPort": 0, "sidecarDisabledMTLS": false}}},
			{"spec.sidecar.initContainerImage", "flomesh/fsm-sidecar-init:Latest!"}}, want: []string{
			`spec.sidecar.initContainerImage: Invalid value: "flomesh/fsm-sidecar-init:Latest!": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`,
			`spec.sidecar.sidecarDrivers[0].proxyServerPort: Invalid value: 0: should be greater than or equal to 1`}},
		// wrong JSON types are reported with the rest
		// The value as written, not only its JSON type ("string").
		{name: "type mismatch plus other errors", sets: []kv{{"spec.sidecar.maxDataPlaneConnections", "many"}, {"spec.sidecar.logLevel", "loud"}}, want: []string{
			`spec.sidecar.maxDataPlaneConnections: Invalid value: "many": must be an integer`,
			`spec.sidecar.logLevel: Unsupported value: "loud": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`}},
		{name: "fractional port", sets: []kv{{"spec.traffic.outboundPortExclusionList", []any{80.5}}}, want: []string{
			`spec.traffic.outboundPortExclusionList: Invalid value: 80.5: must be an integer`}},
		{name: "string with escaped quotes for a number", sets: []kv{{"spec.sidecar.maxDataPlaneConnections", `say "many" \`}}, want: []string{
			`spec.sidecar.maxDataPlaneConnections: Invalid value: "say \"many\" \\": must be an integer`}},
		{name: "number for a string", sets: []kv{{"spec.sidecar.logLevel", 5}}, want: []string{
			`spec.sidecar.logLevel: Invalid value: 5: must be a string`}},
		{name: "boolean for a number", sets: []kv{{"spec.warmup.aggression", true}}, want: []string{
			`spec.warmup.aggression: Invalid value: true: must be a number`}},
		{name: "string for a boolean", sets: []kv{{"spec.traffic.inboundExternalAuthorization.enable", "yes"}}, want: []string{
			`spec.traffic.inboundExternalAuthorization.enable: Invalid value: "yes": must be true or false`}},
		// An object or list, which may be large, is named by its JSON type.
		{name: "object for a number", sets: []kv{{"spec.sidecar.maxDataPlaneConnections", map[string]any{"max": 5}}}, want: []string{
			`spec.sidecar.maxDataPlaneConnections: Invalid value: "object": must be an integer`}},
		// Fields that take a number or a string report another JSON type at
		// their own path, not as an undecodable object.
		{name: "boolean sampledFraction", sets: []kv{{"spec.observability.tracing.sampledFraction", true}}, want: []string{
			`spec.observability.tracing.sampledFraction: Invalid value: "true": must be a number between 0 and 1, such as 0.5`}},
		{name: "object quantity", sets: []kv{{"spec.sidecar.resources.limits", map[string]any{"cpu": map[string]any{"cores": 1}}}}, want: []string{
			`spec.sidecar.resources.limits[cpu]: Invalid value: "{\"cores\":1}": must be a quantity such as 500m, 2 or 64Mi`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.version
			if v == "" {
				v = V1alpha3
			}
			r := Validate(v, build(t, preset(t), tc.sets...))
			if got := messages(r.Errors); !equal(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// An IPv6 exclusion is admitted with a warning that it changes nothing, in
// every served version; IPv4 ones and invalid ones get no such warning.
func TestIPv6ExclusionWarnings(t *testing.T) {
	const noOp = ` changes nothing: the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic is never intercepted and already bypasses it`
	for _, v := range Versions {
		r := Validate(v, build(t, preset(t), kv{"spec.traffic.outboundIPRangeExclusionList", []any{"10.0.0.0/8", "fd00::/8", "2001:db8::1/128"}}))
		if len(r.Errors) != 0 {
			t.Errorf("%s: errors %v", v, r.Errors)
		}
		var want []string
		if IsDeprecatedVersion(v) {
			want = append(want, DeprecationWarning(v))
		}
		want = append(want,
			`spec.traffic.outboundIPRangeExclusionList[1]: "fd00::/8"`+noOp,
			`spec.traffic.outboundIPRangeExclusionList[2]: "2001:db8::1/128"`+noOp)
		if !equal(r.Warnings, want) {
			t.Errorf("%s: warnings\n got %q\nwant %q", v, r.Warnings, want)
		}
	}
	r := Validate(V1alpha3, build(t, preset(t), kv{"spec.traffic.outboundIPRangeExclusionList", []any{"10.0.0.0/8", "fd00::/129"}}))
	if len(r.Warnings) != 0 || len(r.Errors) != 1 {
		t.Errorf("IPv4 and invalid ranges: errors %v, warnings %q; want 1 error, no warning", r.Errors, r.Warnings)
	}
}

// TestSidecarLogLevelWarnings: the levels FSM's chart offers that Pipy does
// not know are admitted (a MeshConfig FSM's chart wrote stays writable) with
// a warning naming the level sidecars start with instead; Pipy's own
// levels, debug:<topic> included, get none, in every served version.
func TestSidecarLogLevelWarnings(t *testing.T) {
	for _, v := range Versions {
		for level, want := range map[string]string{
			"trace":          `spec.sidecar.logLevel: "trace" is not a level Pipy knows: sidecars start with --log-level=debug (FSM passed it on and Pipy exited at start); write one of debug, info, warn, error`,
			"critical":       `spec.sidecar.logLevel: "critical" is not a level Pipy knows: sidecars start with --log-level=error (FSM passed it on and Pipy exited at start); write one of debug, info, warn, error`,
			"warn":           "",
			"debug:codebase": "",
		} {
			r := Validate(v, build(t, preset(t), kv{"spec.sidecar.logLevel", level}))
			var wantW []string
			if IsDeprecatedVersion(v) {
				wantW = append(wantW, DeprecationWarning(v))
			}
			if want != "" {
				wantW = append(wantW, want)
			}
			if len(r.Errors) != 0 || !equal(r.Warnings, wantW) {
				t.Errorf("%s %q: errors %v, warnings\n got %q\nwant %q", v, level, r.Errors, r.Warnings, wantW)
			}
		}
	}
}

// TestFSMInt16PortWarnings: FSM's controller, which keeps running after a
// switch, decodes these ports as int16; above 32767 the MeshConfig is
// admitted (a TCP port) with a warning that FSM cannot read it.
func TestFSMInt16PortWarnings(t *testing.T) {
	const cannot = ` is above 32767: FSM's controller reads this field as an int16 and cannot decode a MeshConfig holding it`
	for _, tc := range []struct {
		name string
		sets []kv
		want []string
	}{
		{"32767 everywhere", []kv{{"spec.repoServer.port", 32767}, {"spec.observability.tracing.port", 32767}, {"spec.observability.remoteLogging.port", 32767}}, nil},
		{"above", []kv{{"spec.repoServer.port", 32768}, {"spec.observability.tracing.port", 65535}, {"spec.observability.remoteLogging.port", 40000}}, []string{
			"spec.repoServer.port: 32768" + cannot,
			"spec.observability.tracing.port: 65535" + cannot,
			"spec.observability.remoteLogging.port: 40000" + cannot}},
		{"out of range is an error, not a warning", []kv{{"spec.repoServer.port", 70000}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Validate(V1alpha3, build(t, preset(t), tc.sets...))
			if !equal(r.Warnings, tc.want) {
				t.Errorf("warnings\n got %q\nwant %q", r.Warnings, tc.want)
			}
			if wantErr := tc.name == "out of range is an error, not a warning"; (len(r.Errors) > 0) != wantErr {
				t.Errorf("errors %v", r.Errors)
			}
		})
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	obj := build(t, preset(t),
		kv{"spec.sidecar.logLevel", "verbose"},
		kv{"spec.traffic.outboundIPRangeExclusionList", []any{"10.0.0.0"}},
		kv{"spec.certificate.certKeyBitSize", 1024},
		kv{"spec.observability.tracing.sampledFraction", "2"},
		kv{"spec.sidecar.configResyncInterval", "often"},
	)
	r := Validate(V1alpha3, obj)
	if len(r.Errors) != 5 {
		t.Fatalf("want 5 errors, got %d: %v", len(r.Errors), r.Errors)
	}
	fields := map[string]bool{}
	for _, e := range r.Errors {
		fields[e.Field] = true
	}
	for _, f := range []string{"spec.sidecar.logLevel", "spec.traffic.outboundIPRangeExclusionList[0]", "spec.certificate.certKeyBitSize",
		"spec.observability.tracing.sampledFraction", "spec.sidecar.configResyncInterval"} {
		if !fields[f] {
			t.Errorf("missing error for %s in %v", f, r.Errors)
		}
	}
}

func TestVersionsAndWarnings(t *testing.T) {
	r := Validate("v1beta1", []byte(`{}`))
	if got := messages(r.Errors); !equal(got, []string{`apiVersion: Unsupported value: "config.flomesh.io/v1beta1": supported values: "config.flomesh.io/v1alpha1", "config.flomesh.io/v1alpha2", "config.flomesh.io/v1alpha3"`}) {
		t.Errorf("unknown version: %q", got)
	}
	r = Validate(V1alpha3, []byte(`{"spec":`))
	if got := messages(r.Errors); !equal(got, []string{"spec: Invalid value: the object is not valid JSON: unexpected end of JSON input"}) {
		t.Errorf("truncated JSON: %v", r.Errors)
	}
	r = Validate(V1alpha2, []byte(`{"spec":{"sidecar":{"sidecarClass":"pipy","initContainerImage":"flomesh/init:1","sidecarDrivers":[{"sidecarName":"pipy","proxyServerPort":6060}]}}}`))
	want := []string{
		"config.flomesh.io/v1alpha2 MeshConfig is deprecated; use config.flomesh.io/v1alpha3 MeshConfig",
		"spec.sidecar.sidecarClass is deprecated: config.flomesh.io/v1alpha3 has no such field",
		"spec.sidecar.initContainerImage is deprecated: config.flomesh.io/v1alpha3 has no such field",
		"spec.sidecar.sidecarDrivers is deprecated: config.flomesh.io/v1alpha3 has no such field",
	}
	// A spec this sparse is stored as a v1alpha3 object its schema
	// refuses (TestStoredSchema): one warning per error.
	if len(r.Errors) != 0 || len(r.Warnings) != len(want)+2 || !equal(r.Warnings[:len(want)], want) ||
		!strings.HasPrefix(r.Warnings[len(want)], "the config.flomesh.io/v1alpha3 object this write is stored as fails the v1alpha3 schema: spec.traffic.interceptionMode") {
		t.Errorf("v1alpha2 deprecated fields: errors %v warnings %q", r.Errors, r.Warnings)
	}
	if r := Validate(V1alpha3, []byte(`{"spec":{}}`)); len(r.Warnings) != 0 || len(r.Errors) != 0 {
		t.Errorf("v1alpha3 empty spec: %v %q", r.Errors, r.Warnings)
	}
}

func TestValidateUpdateRatchets(t *testing.T) {
	stored := build(t, preset(t), kv{"spec.sidecar.logLevel", "verbose"})
	cases := []struct {
		name      string
		obj       []byte
		wantErrs  []string
		wantWarns int
	}{
		{name: "unchanged bad value, other field edited: allowed with warning",
			obj: build(t, preset(t), kv{"spec.sidecar.logLevel", "verbose"}, kv{"spec.observability.fsmLogLevel", "debug"}), wantWarns: 1},
		{name: "bad value changed to another bad value: denied",
			obj:      build(t, preset(t), kv{"spec.sidecar.logLevel", "louder"}),
			wantErrs: []string{`spec.sidecar.logLevel: Unsupported value: "louder": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`}},
		{name: "new problem elsewhere: denied, old one a warning",
			obj:       build(t, preset(t), kv{"spec.sidecar.logLevel", "verbose"}, kv{"spec.certificate.certKeyBitSize", 512}),
			wantErrs:  []string{`spec.certificate.certKeyBitSize: Invalid value: 512: should be greater than or equal to 2048`},
			wantWarns: 1},
		{name: "fixed: allowed, no warning", obj: build(t, preset(t)), wantWarns: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ValidateUpdate(V1alpha3, tc.obj, stored)
			if got := messages(r.Errors); !equal(got, tc.wantErrs) {
				t.Errorf("errors %q, want %q", got, tc.wantErrs)
			}
			if len(r.Warnings) != tc.wantWarns {
				t.Errorf("warnings %q, want %d", r.Warnings, tc.wantWarns)
			}
		})
	}

	// A relation broken by editing the other side is not ratcheted: the old
	// object had no error at all.
	old := build(t, preset(t), kv{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_2"}, kv{"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_3"})
	obj := build(t, preset(t), kv{"spec.sidecar.tlsMinProtocolVersion", "TLSv1_2"}, kv{"spec.sidecar.tlsMaxProtocolVersion", "TLSv1_1"})
	if r := ValidateUpdate(V1alpha3, obj, old); len(r.Errors) != 1 {
		t.Errorf("tls relation broken via max: %v", r.Errors)
	}
}

func TestValidateIdentity(t *testing.T) {
	cases := []struct {
		name, ns string
		want     []string
	}{
		{"fsm-mesh-config", "fsm-system", nil},
		{"other", "other-ns", nil},
		{"my-config", "fsm-system", []string{`metadata.name: Invalid value: "my-config": the mesh in namespace fsm-system reads only the MeshConfig named "fsm-mesh-config"; one MeshConfig per mesh namespace`}},
	}
	for _, tc := range cases {
		if got := messages(ValidateIdentity(tc.name, tc.ns, "fsm-system", "fsm-mesh-config")); !equal(got, tc.want) {
			t.Errorf("%s/%s: %q, want %q", tc.ns, tc.name, got, tc.want)
		}
	}
}

// TestValidateUpdateRatchetsByContentNotIndex: a stored bad list entry (a
// bare address FSM wrote into its iptables rules unparsed, and which worked)
// stays a stored problem when a valid entry is added before it or removed
// from before it; only the entry's position changed. A second copy of it, or
// another bad value, is still new.
func TestValidateUpdateRatchetsByContentNotIndex(t *testing.T) {
	const ex = "spec.traffic.outboundIPRangeExclusionList"
	stored := build(t, preset(t), kv{ex, []any{"10.96.0.0/12", "169.254.169.254"}})
	cases := []struct {
		name      string
		list      []any
		wantErrs  []string
		wantWarns int
	}{
		{name: "valid entry added before it: allowed with warning",
			list: []any{"192.168.0.0/16", "10.96.0.0/12", "169.254.169.254"}, wantWarns: 1},
		{name: "valid entry before it removed: allowed with warning",
			list: []any{"169.254.169.254"}, wantWarns: 1},
		{name: "list reordered: allowed with warning",
			list: []any{"169.254.169.254", "10.96.0.0/12"}, wantWarns: 1},
		{name: "a second copy: denied",
			list:      []any{"169.254.169.254", "10.96.0.0/12", "169.254.169.254"},
			wantErrs:  []string{ex + `[2]: Invalid value: "169.254.169.254": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 169.254.169.254/32`},
			wantWarns: 1},
		{name: "another bad value: denied",
			list:     []any{"10.96.0.0/12", "169.254.169.253"},
			wantErrs: []string{ex + `[1]: Invalid value: "169.254.169.253": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 169.254.169.253/32`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ValidateUpdate(V1alpha3, build(t, preset(t), kv{ex, tc.list}), stored)
			if got := messages(r.Errors); !equal(got, tc.wantErrs) {
				t.Errorf("errors %q, want %q", got, tc.wantErrs)
			}
			if len(r.Warnings) != tc.wantWarns {
				t.Errorf("warnings %q, want %d", r.Warnings, tc.wantWarns)
			}
		})
	}
}
