package chart_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestRenderAdmissionPolicies: each policy confining the servers' writes
// names their ServiceAccount, mesh and namespace, fails closed, is bound with
// Deny, can be turned off, and is left out before Kubernetes 1.30 (no
// ValidatingAdmissionPolicy v1), where NOTES.txt warns. What they refuse is tested on a real
// apiserver in test/chart/install.
func TestRenderAdmissionPolicies(t *testing.T) {
	tests := []struct {
		policy string // name with mesh "blue"
		off    string // value turning it off
		want   []string
	}{
		{"fsm-webhooks-blue-secret-writes", "restrictSecretWrites", []string{
			"'system:serviceaccount:mesh-blue:fsm-webhooks'", "request.namespace == 'mesh-blue'",
			"== 'blue'", "'kubernetes.io/service-account-token'", "['kube-system', 'kube-public']", "'flomesh.io/monitored-by'",
		}},
		{"fsm-webhooks-blue-registration", "restrictRegistrationWrites", []string{
			"'system:serviceaccount:mesh-blue:fsm-webhooks'", "'fsm-webhook-blue'", "'fsm-validator-mesh-blue'",
			"'meshconfigs.config.flomesh.io'", "== 'mesh-blue'", "'fsm-bootstrap'", "fsm-webhooks-conversion-meshconfigs-config-flomesh-io",
		}},
	}
	const values = "fsm: {meshName: blue, fsmNamespace: mesh-blue, caBundleSecretName: blue-ca}"
	r := mustRender(t, values)
	old, err := charttest.RenderFor("v1.29.9", ns, mustValues(t, values))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			p := mustFind(t, r, "ValidatingAdmissionPolicy", tc.policy)
			spec, _ := yaml.Marshal(nested(t, p, "spec"))
			for _, w := range tc.want {
				if !strings.Contains(string(spec), w) {
					t.Errorf("policy lacks %s:\n%s", w, spec)
				}
			}
			if got := nested(t, p, "spec", "failurePolicy"); got != "Fail" {
				t.Errorf("failurePolicy %v", got)
			}
			b := mustFind(t, r, "ValidatingAdmissionPolicyBinding", tc.policy)
			if got := nested(t, b, "spec", "policyName"); got != tc.policy {
				t.Errorf("binding names policy %v", got)
			}
			if got := nested(t, b, "spec", "validationActions"); len(got.([]any)) != 1 || got.([]any)[0] != "Deny" {
				t.Errorf("validationActions %v", got)
			}
			if old.Find("ValidatingAdmissionPolicy", tc.policy) != nil || old.Find("ValidatingAdmissionPolicyBinding", tc.policy) != nil {
				t.Error("rendered for Kubernetes 1.29")
			}
			if !strings.Contains(old.Notes, "WARNING: Kubernetes v1.29.9 has no ValidatingAdmissionPolicy v1") {
				t.Errorf("NOTES for Kubernetes 1.29 do not warn:\n%s", old.Notes)
			}
			if strings.Contains(r.Notes, "WARNING") || r.Notes == "" {
				t.Errorf("NOTES for Kubernetes %s:\n%s", charttest.KubeVersion, r.Notes)
			}
			if tc.policy == "fsm-webhooks-blue-secret-writes" {
				// The fsm namespace's Secrets the servers write, and no
				// other: fsm.caBundleSecretName's and the serving certificates'.
				const want = "['blue-ca', 'mutating-webhook-cert-secret', 'validating-webhook-cert-secret', 'crd-converter-cert-secret']"
				var got any
				for _, v := range nested(t, p, "spec", "variables").([]any) {
					if v.(map[string]any)["name"] == "fsmSecretNames" {
						got = v.(map[string]any)["expression"]
					}
				}
				if got != want {
					t.Errorf("variable fsmSecretNames %q, want %q", got, want)
				}
			}
			off := mustRender(t, "fsm: {meshName: blue, webhooks: {"+tc.off+": false}}")
			if off.Find("ValidatingAdmissionPolicy", tc.policy) != nil || off.Find("ValidatingAdmissionPolicyBinding", tc.policy) != nil {
				t.Errorf("rendered with %s: false", tc.off)
			}
		})
	}
}

// jsonFields are the JSON names of a struct type's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// TestRegistrationPolicyComparesEveryField: the registration policy lets the
// servers change only a webhook's clientConfig.caBundle and a CRD's
// spec.conversion by comparing every other field by name. A field added to
// the API (a k8s.io/api upgrade) would slip through unless listed: this test
// fails until it is.
func TestRegistrationPolicyComparesEveryField(t *testing.T) {
	p := mustFind(t, mustRender(t, ""), "ValidatingAdmissionPolicy", "fsm-webhooks-fsm-registration")
	var kept string
	for _, v := range nested(t, p, "spec", "variables").([]any) {
		if v.(map[string]any)["name"] == "webhooksKept" {
			kept = v.(map[string]any)["expression"].(string)
		}
	}
	if kept == "" {
		t.Fatal("no variable webhooksKept")
	}
	var all strings.Builder
	for _, v := range nested(t, p, "spec", "validations").([]any) {
		all.WriteString(v.(map[string]any)["expression"].(string))
	}
	validations := all.String()

	seen := map[string]bool{}
	for _, typ := range []reflect.Type{reflect.TypeFor[admv1.MutatingWebhook](), reflect.TypeFor[admv1.ValidatingWebhook]()} {
		for _, f := range jsonFields(typ) {
			if f == "clientConfig" || seen[f] {
				continue
			}
			seen[f] = true
			want := "w.?" + f + " == o.?" + f
			if f == "name" {
				want = "o.name == w.name"
			}
			if !strings.Contains(kept, want) {
				t.Errorf("webhooksKept does not compare %s.%s (%q)", typ.Name(), f, want)
			}
		}
	}
	for _, f := range jsonFields(reflect.TypeFor[admv1.WebhookClientConfig]()) {
		if f == "caBundle" {
			continue
		}
		if want := "w.clientConfig.?" + f + " == o.clientConfig.?" + f; !strings.Contains(kept, want) {
			t.Errorf("webhooksKept does not compare clientConfig.%s (%q)", f, want)
		}
	}
	for _, f := range jsonFields(reflect.TypeFor[apiextv1.CustomResourceDefinitionSpec]()) {
		if f == "conversion" {
			continue
		}
		if !strings.Contains(validations, "object.spec."+f+" == oldObject.spec."+f) &&
			!strings.Contains(validations, "object.spec.?"+f+" == oldObject.spec.?"+f) {
			t.Errorf("the CRD's spec.%s is not compared", f)
		}
	}
}

// TestRenderNetworkPolicy: off by default; on, it admits the webhook ports of
// exactly the Deployment's pods from the apiserver's sources only, the
// converter port from those pods themselves, and metrics from the given
// peers.
func TestRenderNetworkPolicy(t *testing.T) {
	if o := mustRender(t, "").Find("NetworkPolicy", "fsm-webhooks"); o != nil {
		t.Fatal("NetworkPolicy rendered by default")
	}
	r := mustRender(t, `
fsm:
  webhooks:
    networkPolicy:
      enabled: true
      apiServerCIDRs: [10.0.0.10/32, "fd00::/64"]
      apiServerPeers:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: konnectivity-agent}}
      metricsFrom:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`)
	np := mustFind(t, r, "NetworkPolicy", "fsm-webhooks")
	dep := mustFind(t, r, "Deployment", "fsm-webhooks")
	if np.GetNamespace() != ns {
		t.Errorf("namespace %q", np.GetNamespace())
	}
	if got, want := nested(t, np, "spec", "podSelector", "matchLabels"), nested(t, dep, "spec", "selector", "matchLabels"); !reflect.DeepEqual(got, want) {
		t.Errorf("podSelector %v, want the Deployment's selector %v", got, want)
	}
	if got := nested(t, np, "spec", "policyTypes"); !reflect.DeepEqual(got, []any{"Ingress"}) {
		t.Errorf("policyTypes %v", got)
	}
	ingress := nested(t, np, "spec", "ingress").([]any)
	if len(ingress) != 3 {
		t.Fatalf("%d ingress rules, want webhooks, the converter from the servers themselves, and metrics", len(ingress))
	}
	ports := func(rule any) []int64 {
		var out []int64
		for _, p := range rule.(map[string]any)["ports"].([]any) {
			if p.(map[string]any)["protocol"] != "TCP" {
				t.Errorf("port %v not TCP", p)
			}
			out = append(out, p.(map[string]any)["port"].(int64))
		}
		return out
	}
	// The webhook ports are the Deployment's.
	var webhookPorts []int64
	for _, p := range container(t, dep)["ports"].([]any) {
		if n := p.(map[string]any)["name"]; n == "sidecar-inject" || n == "validator" || n == "crdconversion" {
			webhookPorts = append(webhookPorts, p.(map[string]any)["containerPort"].(int64))
		}
	}
	if got := ports(ingress[0]); len(webhookPorts) != 3 || !slices.Equal(got, webhookPorts) {
		t.Errorf("webhook rule ports %v, want the Deployment's %v", got, webhookPorts)
	}
	wantFrom := []any{
		map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.10/32"}},
		map[string]any{"ipBlock": map[string]any{"cidr": "fd00::/64"}},
		map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "kube-system"}},
			"podSelector":       map[string]any{"matchLabels": map[string]any{"k8s-app": "konnectivity-agent"}},
		},
	}
	if got := ingress[0].(map[string]any)["from"]; !reflect.DeepEqual(got, wantFrom) {
		t.Errorf("webhook rule from %v, want %v", got, wantFrom)
	}
	// The servers' own handshake through fsm-bootstrap before they publish
	// the conversion stanza: the converter port, from the Deployment's pods.
	var converterPort []int64
	for _, p := range container(t, dep)["ports"].([]any) {
		if p.(map[string]any)["name"] == "crdconversion" {
			converterPort = append(converterPort, p.(map[string]any)["containerPort"].(int64))
		}
	}
	if got := ports(ingress[1]); len(converterPort) != 1 || !slices.Equal(got, converterPort) {
		t.Errorf("servers-to-converter rule ports %v, want the converter's %v", got, converterPort)
	}
	wantSelf := []any{map[string]any{"podSelector": map[string]any{"matchLabels": nested(t, dep, "spec", "selector", "matchLabels")}}}
	if got := ingress[1].(map[string]any)["from"]; !reflect.DeepEqual(got, wantSelf) {
		t.Errorf("servers-to-converter rule from %v, want %v", got, wantSelf)
	}
	if got := ports(ingress[2]); !slices.Equal(got, []int64{8080}) {
		t.Errorf("metrics rule ports %v", got)
	}
	wantMetrics := []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}}
	if got := ingress[2].(map[string]any)["from"]; !reflect.DeepEqual(got, wantMetrics) {
		t.Errorf("metrics rule from %v, want %v", got, wantMetrics)
	}

	// Without metricsFrom anyone may scrape; the webhook rule is unchanged.
	open := mustFind(t, mustRender(t, "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [192.168.0.0/16]}}}"), "NetworkPolicy", "fsm-webhooks")
	rules := nested(t, open, "spec", "ingress").([]any)
	if _, has := rules[2].(map[string]any)["from"]; has || len(rules[0].(map[string]any)["from"].([]any)) != 1 {
		t.Errorf("ingress %v", rules)
	}
}

// TestNetworkPolicyValuesRejected: values that would lock the apiserver out
// or are not CIDRs stop the render, naming the field.
func TestNetworkPolicyValuesRejected(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   []string
	}{
		{"enabled without any source", "fsm: {webhooks: {networkPolicy: {enabled: true}}}", []string{"fsm.webhooks.networkPolicy", "apiServerCIDRs or apiServerPeers"}},
		{"not a CIDR", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.1]}}}", []string{"/fsm/webhooks/networkPolicy/apiServerCIDRs/0", "10.0.0.1"}},
		{"prefix too long", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.0/33]}}}", []string{"/fsm/webhooks/networkPolicy/apiServerCIDRs/0", "10.0.0.0/33"}},
		// The apiserver refuses these mid-install (TestNetworkPolicyOnAPIServer).
		{"host bits set", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.0/28, 10.0.0.10/24]}}}",
			[]string{"fsm.webhooks.networkPolicy.apiServerCIDRs[1]", `"10.0.0.10/24"`, "bits set past its prefix length", "write 10.0.0.0/24", "10.0.0.10/32"}},
		{"host bits set, /31", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [192.168.7.255/31]}}}",
			[]string{"apiServerCIDRs[0]", "write 192.168.7.254/31"}},
		{"octet above 255", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerCIDRs: [10.0.300.0/24]}}}",
			[]string{"apiServerCIDRs[0]", `"10.0.300.0/24"`, "300 is not an IPv4 octet"}},
		{"empty peer (would admit everyone)", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerPeers: [{}]}}}", []string{"/fsm/webhooks/networkPolicy/apiServerPeers/0"}},
		{"unknown peer key", "fsm: {webhooks: {networkPolicy: {enabled: true, apiServerPeers: [{cidr: 10.0.0.0/8}]}}}", []string{"/fsm/webhooks/networkPolicy/apiServerPeers/0", "cidr"}},
		{"unknown key", "fsm: {webhooks: {networkPolicy: {enable: true}}}", []string{"/fsm/webhooks/networkPolicy", "enable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := charttest.Render(ns, mustValues(t, tc.values))
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
