package validator

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// DNS proxy answers FSM v1.5.1 admits and serves, which our MeshConfig rules
// (validator/meshconfig/validate.go resolveAddrs) denied until a review
// against FSM's source. FSM v1.5.1 has no MeshConfig validation
// (pkg/validator/server.go routes no config.flomesh.io kind), so only its CRD
// schema applies: ipv4 is a required key, any string; ipv6 any string. What
// FSM does with them:
//   - pkg/utils/ipconv.go IPv4Tov6 is how FSM itself writes an IPv6 for an
//     IPv4 (generateIPv6BasedOnIPv4): "::ffff:127.0.0.2", the IPv4-mapped form;
//     pkg/sidecar/v1/providers/pipy/repo/codebase/dns-main.js documents the
//     wildcard answer as "ipv6 : ::ffff:127.0.0.2".
//   - pkg/dns/handler.go HandleWildcard answers AAAA with
//     net.ParseIP(db.IPv6) (any IPv6 literal, mapped or not) and skips an
//     entry whose IPv4 is empty for A queries ("if len(db.IPv4) == 0 {
//     continue }"): an IPv6-only entry is supported;
//     pkg/sidecar/v1/providers/pipy/repo/util.go generatePipyWildcardIPRanges
//     also skips an empty IPv4 ("if len(ipAddr.IPv4) > 0").

// dnsWildcardMeshConfig is the FSM preset MeshConfig with
// spec.sidecar.localDNSProxy.wildcard.ips set to ips.
func dnsWildcardMeshConfig(t *testing.T, ips []map[string]any) []byte {
	t.Helper()
	var u map[string]any
	if err := json.Unmarshal(presetJSON(t), &u); err != nil {
		t.Fatal(err)
	}
	spec := u["spec"].(map[string]any)
	sidecar := spec["sidecar"].(map[string]any)
	dns, _ := sidecar["localDNSProxy"].(map[string]any)
	if dns == nil {
		dns = map[string]any{}
		sidecar["localDNSProxy"] = dns
	}
	dns["enable"] = true
	dns["wildcard"] = map[string]any{"enable": true, "los": []any{}, "ips": ips}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func meshConfigCreate(t *testing.T, obj []byte) admission.Response {
	t.Helper()
	h := NewHandler(Options{FSMNamespace: "fsm-system", MeshConfigName: "fsm-mesh-config"})
	return h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "review-dns",
		Kind:      metav1.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.V1alpha3, Kind: meshconfig.Kind},
		Resource:  metav1.GroupVersionResource{Group: meshconfig.Group, Version: meshconfig.V1alpha3, Resource: meshconfig.Resource},
		Operation: admissionv1.Create,
		Namespace: "fsm-system",
		Name:      "fsm-mesh-config",
		Object:    runtime.RawExtension{Raw: obj},
	}})
}

// The baseline (the preset with the wildcard DNS proxy on, ipv4 only) is
// admitted, so a denial below is the ipv6/ipv4 value alone.
func TestDNSWildcardBaselineAdmitted(t *testing.T) {
	resp := meshConfigCreate(t, dnsWildcardMeshConfig(t, []map[string]any{{"ipv4": "127.0.0.2"}}))
	if !resp.Allowed {
		t.Fatalf("test setup: baseline denied: %v", resp.Result)
	}
}

// TestDNSWildcardIPv4MappedIPv6: ipv6 "::ffff:127.0.0.2",
// the exact form FSM's own pkg/utils/ipconv.go IPv4Tov6 generates and its
// DNS handler serves, is admitted (it was denied).
func TestDNSWildcardIPv4MappedIPv6(t *testing.T) {
	obj := dnsWildcardMeshConfig(t, []map[string]any{{"ipv4": "127.0.0.2", "ipv6": "::ffff:127.0.0.2"}})
	resp := meshConfigCreate(t, obj)
	if !resp.Allowed {
		t.Errorf("MeshConfig with spec.sidecar.localDNSProxy.wildcard.ips[0].ipv6 = \"::ffff:127.0.0.2\":\n"+
			"  FSM v1.5.1: admitted (no MeshConfig validation: pkg/validator/server.go NewValidatingWebhook routes no "+
			"config.flomesh.io kind; CRD schema: ipv6 is any string); FSM writes this very form itself "+
			"(pkg/utils/ipconv.go IPv4Tov6) and serves it (pkg/dns/handler.go HandleWildcard: net.ParseIP(db.IPv6))\n"+
			"  ours: denied (validator/meshconfig/validate.go resolveAddrs refuses ip.Is4In6(); undocumented in validator/README.md): %d %s",
			resp.Result.Code, resp.Result.Message)
	}
}

// TestDNSWildcardIPv6Only: an IPv6-only wildcard answer
// (ipv4 "", which FSM's CRD admits and FSM's DNS handler skips for A
// queries) is admitted (it was denied as Required).
func TestDNSWildcardIPv6Only(t *testing.T) {
	obj := dnsWildcardMeshConfig(t, []map[string]any{{"ipv4": "127.0.0.2"}, {"ipv4": "", "ipv6": "fd00::2"}})
	resp := meshConfigCreate(t, obj)
	if !resp.Allowed {
		t.Errorf("MeshConfig with spec.sidecar.localDNSProxy.wildcard.ips[1] = {ipv4: \"\", ipv6: \"fd00::2\"}:\n"+
			"  FSM v1.5.1: admitted (CRD: ipv4 is a required key but any string; no webhook rule) and used: "+
			"pkg/dns/handler.go HandleWildcard skips an empty IPv4 for A and answers AAAA with the ipv6; "+
			"pkg/sidecar/v1/providers/pipy/repo/util.go generatePipyWildcardIPRanges skips an empty IPv4\n"+
			"  ours: denied (validator/meshconfig/validate.go resolveAddrs: field.Required ipv4): %d %s",
			resp.Result.Code, resp.Result.Message)
	}
}
