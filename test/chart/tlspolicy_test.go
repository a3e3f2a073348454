package chart_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestTLSCipherSuitesSchemaIsServes: fsm.webhooks.tlsCipherSuites' schema
// enum holds exactly the names serve's --tls-cipher-suites accepts
// (kube-apiserver's, its legacy ChaCha20 names included), and a value of
// kube-apiserver's spelling renders as the flag.
func TestTLSCipherSuitesSchemaIsServes(t *testing.T) {
	schema := readSchema(t)
	var node any = schema
	for _, k := range []string{"properties", "fsm", "properties", "webhooks", "properties", "tlsCipherSuites", "items", "enum"} {
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("schema has no %s", k)
		}
		node = m[k]
	}
	var enum []string
	for _, v := range node.([]any) {
		enum = append(enum, v.(string))
	}
	for _, name := range enum {
		if _, err := webhooks.ParseCipherSuites([]string{name}); err != nil {
			t.Errorf("the schema allows a suite serve refuses: %v", err)
		}
	}
	for _, name := range append(webhooks.SecureCipherSuiteNames(), "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305") {
		if !slices.Contains(enum, name) {
			t.Errorf("the schema refuses %s, which serve (and kube-apiserver) accept", name)
		}
	}

	const suites = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
	c := podSpec(t, "fsm: {webhooks: {tlsCipherSuites: ["+suites+"]}}").Spec.Containers[0]
	if !slices.Contains(c.Args, "--tls-cipher-suites="+suites) {
		t.Errorf("args %q lack --tls-cipher-suites=%s", c.Args, suites)
	}
	if _, err := webhooks.ParseCipherSuites(strings.Split(suites, ",")); err != nil {
		t.Errorf("serve refuses what the chart passes: %v", err)
	}
}
