package policy

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

func decodeT[T any](t *testing.T, js string) *T {
	t.Helper()
	var v T
	if err := Decode([]byte(js), &v); err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	return &v
}

// enforced and beyond build the expected findings: rules FSM as deployed
// enforces, and rules it never applied.
func enforced(msgs ...string) []Finding { return fsmEnforced(msgs...) }
func beyond(msgs ...string) []Finding   { return beyondFSM(fsmEnforced(msgs...)) }

// eq compares what users see (message and severity); keys, which only
// ratcheting reads, are covered by TestRatchetIdentity.
func eq(t *testing.T, got, want []Finding) {
	t.Helper()
	seen := func(a, b Finding) bool { return a.Message == b.Message && a.BeyondFSM == b.BeyondFSM }
	if !slices.EqualFunc(got, want, seen) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func TestTrafficTarget(t *testing.T) {
	eq(t, ValidateTrafficTarget(decodeT[TrafficTarget](t, `{"metadata":{"namespace":"a"},"spec":{"destination":{"namespace":"a"}}}`)), nil)
	eq(t, ValidateTrafficTarget(decodeT[TrafficTarget](t, `{"metadata":{"namespace":"a"},"spec":{"destination":{"namespace":"b"}}}`)),
		enforced("The traffic target namespace (a) must match spec.Destination.Namespace (b)"))
}

func TestIngressBackend(t *testing.T) {
	cases := []struct {
		name   string
		obj    string
		others []string
		want   []Finding
	}{
		{name: "valid http with service source",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"HTTP"}}],"sources":[{"kind":"Service","name":"ingress","namespace":"ingress-ns"}]}}`},
		{name: "valid https mTLS with principal",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":443,"protocol":"https"},"tls":{"skipClientCertValidation":false}}],"sources":[{"kind":"AuthenticatedPrincipal","name":"ingress.ns.cluster.local"}]}}`},
		{name: "https skipping client validation needs no principal",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":443,"protocol":"https"},"tls":{"skipClientCertValidation":true}}],"sources":[{"kind":"IPRange","name":"10.0.0.0/8"}]}}`},
		{name: "grpc with client validation is not held to the https rule (FSM bug fixed)",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":50051,"protocol":"grpc"},"tls":{"skipClientCertValidation":false}}],"sources":[{"kind":"IPRange","name":"10.0.0.0/8"}]}}`},
		{name: "https mTLS without principal",
			obj:  `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"a","port":{"number":443,"protocol":"https"},"tls":{"skipClientCertValidation":false}},{"name":"b","port":{"number":443,"protocol":"HTTPS"},"tls":{}}],"sources":[{"kind":"Service","name":"s","namespace":"n"}]}}`,
			want: beyond("HTTPS ingress with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source")},
		{name: "FSM's enforced rules deny next to a rule FSM skipped",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"a","port":{"number":443,"protocol":"https"},"tls":{}},{"name":"b","port":{"number":1,"protocol":"tcp"}}],"sources":[{"kind":"Pod"}]}}`,
			want: []Finding{
				{Message: "HTTPS ingress with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source", BeyondFSM: true},
				{Message: "Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: tcp"},
				{Message: "Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange"},
			}},
		{name: "every problem at once",
			obj: `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}},{"name":"web","port":{"number":80,"protocol":"tcp"}}],
			"sources":[{"kind":"Service"},{"kind":"AuthenticatedPrincipal"},{"kind":"IPRange","name":"10.0.0.1"},{"kind":"Pod","name":"x"}]}}`,
			want: enforced(
				"Duplicate backends detected with service name: web and port: 80",
				"Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: tcp",
				"'source.name' not specified for source kind Service",
				"'source.namespace' not specified for source kind Service",
				"'source.name' not specified for source kind AuthenticatedPrincipal",
				"Invalid 'source.name' value specified for IPRange. Expected CIDR notation 'a.b.c.d/x', got '10.0.0.1'",
				"Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange",
			)},
		{name: "no conflict with IngressBackends sharing no backend",
			obj:    `{"metadata":{"name":"a","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}}],"sources":[{"kind":"IPRange","name":"0.0.0.0/0"}]}}`,
			others: []string{`{"metadata":{"name":"b","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":81}},{"name":"db","port":{"number":80}}]}}`}},
		{name: "conflicts with other IngressBackends in the namespace",
			obj: `{"metadata":{"name":"a","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80,"protocol":"http"}},{"name":"api","port":{"number":8080,"protocol":"http"}}],"sources":[{"kind":"IPRange","name":"0.0.0.0/0"}]}}`,
			others: []string{
				`{"metadata":{"name":"a","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80}}]}}`,
				`{"metadata":{"name":"c","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":80}},{"name":"api","port":{"number":8080}},{"name":"web","port":{"number":80}}]}}`,
				`{"metadata":{"name":"b","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":81}},{"name":"api","port":{"number":8080}}]}}`,
				`{"metadata":{"name":"d","namespace":"ns"},"spec":{"backends":[{"name":"db","port":{"number":5432}}]}}`,
			},
			want: beyond("duplicate backends detected\n" +
				"[+] IngressBackend ns/a conflicts with ns/b:\nBackend api specified in a and b conflicts\n\n" +
				"[+] IngressBackend ns/a conflicts with ns/c:\nBackend api specified in a and c conflicts\nBackend web specified in a and c conflicts\n\n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var others []BackendPolicy
			for _, o := range tc.others {
				others = append(others, *decodeT[BackendPolicy](t, o))
			}
			eq(t, ValidateIngressBackend(decodeT[BackendPolicy](t, tc.obj), others), tc.want)
		})
	}
}

func TestAccessControl(t *testing.T) {
	obj := decodeT[BackendPolicy](t, `{"metadata":{"name":"a","namespace":"ns"},"spec":{"backends":[{"name":"web","port":{"number":443,"protocol":"https"},"tls":{"skipClientCertValidation":false}},{"name":"db","port":{"number":5432,"protocol":"tcp"}}],"sources":[{"kind":"Service","name":"x","namespace":"y"}]}}`)
	other := decodeT[BackendPolicy](t, `{"metadata":{"name":"b","namespace":"ns"},"spec":{"backends":[{"name":"db","port":{"number":5432}}]}}`)
	// FSM never routes AccessControl: every finding is beyond FSM, even
	// those IngressBackend enforces.
	eq(t, ValidateAccessControl(obj, []BackendPolicy{*other}), beyond(
		"HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source",
		"duplicate backends detected\n[+] AccessControlBackend ns/a conflicts with ns/b:\nBackend db specified in a and b conflicts\n\n",
	))
	bad := decodeT[BackendPolicy](t, `{"metadata":{"name":"a","namespace":"ns"},"spec":{"sources":[{"kind":"IPRange","name":"x"}]}}`)
	eq(t, ValidateAccessControl(bad, nil), beyond("Invalid 'source.name' value specified for IPRange. Expected CIDR notation 'a.b.c.d/x', got 'x'"))
}

// TestIPRangeSourceParsesAsFSM pins IPRange sources to FSM v1.5.1's check,
// net.ParseCIDR: a range FSM admitted must not be denied in the default mode.
// netip.ParsePrefix, stricter, refused the leading-zero prefix length.
func TestIPRangeSourceParsesAsFSM(t *testing.T) {
	const msg = "Invalid 'source.name' value specified for IPRange. Expected CIDR notation 'a.b.c.d/x', got '%s'"
	for _, tc := range []struct {
		cidr string
		ok   bool // FSM's answer
	}{
		{"10.0.0.0/8", true},
		{"10.0.0.0/08", true}, // leading zero in the prefix length
		{"10.0.0.0/008", true},
		{"10.1.2.3/8", true}, // host bits set
		{"fd00::/8", true},
		{"::ffff:10.0.0.0/104", true},
		{"10.0.0.1", false},
		{"10.0.0.0/33", false},
		{"010.0.0.0/8", false}, // leading zero in an octet
		{"10.0.0.0/-1", false},
		{" 10.0.0.0/8", false},
		{"", false},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			if _, _, err := net.ParseCIDR(tc.cidr); (err == nil) != tc.ok {
				t.Fatalf("table: net.ParseCIDR(%q) error %v, want ok=%v", tc.cidr, err, tc.ok)
			}
			js, _ := json.Marshal(tc.cidr)
			b := decodeT[BackendPolicy](t, `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":[{"name":"svc","port":{"number":80,"protocol":"http"}}],"sources":[{"kind":"IPRange","name":`+string(js)+`}]}}`)
			var want []Finding
			if !tc.ok {
				want = enforced(fmt.Sprintf(msg, tc.cidr))
			}
			eq(t, ValidateIngressBackend(b, nil), want)
			eq(t, ValidateAccessControl(b, nil), beyondFSM(want))
			if v := Decide(ValidateIngressBackend(b, nil), nil, false); (len(v.Denials) == 0) != tc.ok {
				t.Errorf("default mode: denials %q, want allowed=%v", v.Denials, tc.ok)
			}
		})
	}
}

func TestEgress(t *testing.T) {
	cases := []struct {
		name string
		obj  string
		want []Finding
	}{
		{name: "valid", obj: `{"spec":{"matches":[{"apiGroup":"specs.smi-spec.io/v1alpha4","kind":"HTTPRouteGroup","name":"r"},{"apiGroup":"policy.flomesh.io/v1alpha1","kind":"UpstreamTrafficSetting","name":"u"}]}}`},
		{name: "wrong kinds, missing and unknown group, two settings",
			obj: `{"spec":{"matches":[{"apiGroup":"specs.smi-spec.io/v1alpha4","kind":"TCPRoute","name":"r"},{"apiGroup":"policy.flomesh.io/v1alpha1","kind":"Egress","name":"e"},{"kind":"HTTPRouteGroup","name":"nogroup"},{"apiGroup":"x.io/v1","kind":"K","name":"k"},
			{"apiGroup":"policy.flomesh.io/v1alpha1","kind":"UpstreamTrafficSetting","name":"u1"},{"apiGroup":"policy.flomesh.io/v1alpha1","kind":"UpstreamTrafficSetting","name":"u2"}]}}`,
			want: enforced(
				"Expected 'matches.kind' for match 'r' to be 'HTTPRouteGroup', got: TCPRoute",
				"Expected 'matches.kind' for match 'e' to be 'UpstreamTrafficSetting', got: Egress",
				"Expected 'matches.apiGroup' to be one of [specs.smi-spec.io/v1alpha4 policy.flomesh.io/v1alpha1], got: <unset>",
				"Expected 'matches.apiGroup' to be one of [specs.smi-spec.io/v1alpha4 policy.flomesh.io/v1alpha1], got: x.io/v1",
				"Cannot have more than 1 UpstreamTrafficSetting match",
			)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { eq(t, ValidateEgress(decodeT[Egress](t, tc.obj)), tc.want) })
	}
}

func TestUpstreamTrafficSetting(t *testing.T) {
	others := []UpstreamTrafficSetting{
		*decodeT[UpstreamTrafficSetting](t, `{"metadata":{"name":"self","namespace":"ns"},"spec":{"host":"web.ns.svc.cluster.local"}}`),
		*decodeT[UpstreamTrafficSetting](t, `{"metadata":{"name":"other2","namespace":"ns"},"spec":{"host":"api.ns.svc.cluster.local"}}`),
		*decodeT[UpstreamTrafficSetting](t, `{"metadata":{"name":"other","namespace":"ns"},"spec":{"host":"api.ns.svc.cluster.local"}}`),
	}
	cases := []struct {
		name string
		obj  string
		want []Finding
	}{
		{name: "valid, own old version ignored", obj: `{"metadata":{"name":"self","namespace":"ns"},"spec":{"host":"web.ns.svc.cluster.local","rateLimit":{"local":{"http":{"requests":10,"unit":"second","responseStatusCode":429}}},"httpRoutes":[{"path":"/","rateLimit":{"local":{"requests":1,"unit":"minute"}}}]}}`},
		{name: "not an FQDN", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web"}}`,
			want: beyond(`spec.host: Invalid value: "web": invalid FQDN specified as host`)},
		{name: "two labels", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web.ns"}}`},
		{name: "tab", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web.ns\tsvc"}}`,
			want: beyond(`spec.host: Invalid value: "web.ns\tsvc": invalid FQDN specified as host`)},
		{name: "port", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web.ns:80"}}`,
			want: beyond(`spec.host: Invalid value: "web.ns:80": invalid FQDN specified as host`)},
		{name: "lowest registered status code", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web.ns","rateLimit":{"local":{"http":{"responseStatusCode":100}}}}}`},
		{name: "empty label", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"web..svc"}}`,
			want: beyond(`spec.host: Invalid value: "web..svc": invalid FQDN specified as host`)},
		{name: "duplicate host and bad codes", obj: `{"metadata":{"name":"x","namespace":"ns"},"spec":{"host":"api.ns.svc.cluster.local","rateLimit":{"local":{"http":{"responseStatusCode":999}}},"httpRoutes":[{"path":"/a","rateLimit":{"local":{"responseStatusCode":430}}},{"path":"/b"}]}}`,
			want: beyond(
				"UpstreamTrafficSetting ns/x conflicts with ns/other since they have the same host api.ns.svc.cluster.local",
				"invalid responseStatusCode 999",
				"invalid responseStatusCode 430",
			)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eq(t, ValidateUpstreamTrafficSetting(decodeT[UpstreamTrafficSetting](t, tc.obj), others), tc.want)
		})
	}
}

func TestEgressGateway(t *testing.T) {
	mk := func(name, ns string, withGlobal bool) EgressGateway {
		spec := `{}`
		if withGlobal {
			spec = `{"global":[{"service":"gw","namespace":"fsm-system"}]}`
		}
		return *decodeT[EgressGateway](t, `{"metadata":{"name":"`+name+`","namespace":"`+ns+`"},"spec":`+spec+`}`)
	}
	self := mk("gw", "a", true)
	eq(t, ValidateEgressGateway(&self, []EgressGateway{mk("gw", "a", true), mk("plain", "b", false)}), nil)
	eq(t, ValidateEgressGateway(&self, []EgressGateway{mk("gw", "a", true), mk("other", "b", true)}),
		enforced("Redefinition of global egress gateway policy and conflict with b.other"))
	eq(t, ValidateEgressGateway(&self, []EgressGateway{mk("gw", "b", true)}),
		enforced("Redefinition of global egress gateway policy and conflict with b.gw"))
	plain := mk("plain", "a", false)
	eq(t, ValidateEgressGateway(&plain, []EgressGateway{mk("other", "b", true)}), nil)
}

func TestFeatureGatedKinds(t *testing.T) {
	const missing = "plugin[p.] is missing pipy script"
	cases := []struct {
		name    string
		enabled bool
		plugin  string // "" for PluginChain and PluginConfig
		want    []Finding
	}{
		{name: "plugin policy off", plugin: `{"metadata":{"name":"p"},"spec":{"pipyscript":"pipy()"}}`, want: enforced(PluginPolicyDisabled)},
		{name: "chain or config, policy off", want: enforced(PluginPolicyDisabled)},
		{name: "chain or config, policy on", enabled: true},
		{name: "pipyscript set", enabled: true, plugin: `{"metadata":{"name":"p"},"spec":{"pipyscript":"pipy()"}}`},
		// Plugin is cluster-scoped: FSM prints the empty namespace as is.
		{name: "pipyscript missing", enabled: true, plugin: `{"metadata":{"name":"p"},"spec":{}}`, want: enforced(missing)},
		{name: "only the field name our earlier version read", enabled: true,
			plugin: `{"metadata":{"name":"p"},"spec":{"script":"pipy()"}}`, want: enforced(missing)},
		{name: "blank pipyscript: FSM accepted it", enabled: true,
			plugin: `{"metadata":{"name":"p"},"spec":{"pipyscript":" \n"}}`, want: beyond(missing + ": spec.pipyscript holds only whitespace")},
		{name: "namespace printed when there is one", enabled: true,
			plugin: `{"metadata":{"name":"p","namespace":"ns"},"spec":{}}`, want: enforced("plugin[p.ns] is missing pipy script")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p *Plugin
			if tc.plugin != "" {
				p = decodeT[Plugin](t, tc.plugin)
			}
			eq(t, ValidatePluginKind(tc.enabled, p, []byte(tc.plugin)), tc.want)
		})
	}
	eq(t, ValidateAccessCert(false, []byte(`{"spec":{}}`)), beyond(AccessCertPolicyDisabled))
	eq(t, ValidateAccessCert(true, []byte(`{"spec":{}}`)), nil)
}

func TestDecodeErrors(t *testing.T) {
	var e Egress
	if err := Decode(nil, &e); err == nil {
		t.Error("empty object decoded")
	}
	if err := Decode([]byte(`{"spec":{"matches":"nope"}}`), &e); err == nil || !strings.Contains(err.Error(), "decoding the object") {
		t.Errorf("mistyped object: %v", err)
	}
	// Unknown fields are ignored.
	if err := Decode([]byte(`{"spec":{"future":1,"matches":[]}}`), &e); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}
