package chart_test

import (
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestVaultHostRefusedAtRender: fsm.vault.host is the Vault host name
// ("host name of the Vault server (example: vault.contoso.com)", seeds);
// port and protocol are fsm.vault.port / fsm.vault.protocol. A URL or
// host:port there renders a Deployment whose servers crash-loop on a
// mangled address ("parse \"http://[https:%2F%2Fvault.example.com]:8200\"");
// the chart refuses other bad values at render naming the key.
func TestVaultHostRefusedAtRender(t *testing.T) {
	for _, host := range []string{"https://vault.example.com", "vault.example.com:8200", "vault example", "[fd00::5]"} {
		t.Run(host, func(t *testing.T) {
			_, err := charttest.Render(ns, mustValues(t, `fsm: {certificateProvider: {kind: vault}, vault: {host: "`+host+`", token: t}}`))
			if err == nil || !strings.Contains(err.Error(), "fsm.vault.host") && !strings.Contains(err.Error(), "/fsm/vault/host") {
				t.Fatalf("render err = %v; want a refusal naming fsm.vault.host", err)
			}
		})
	}
	for _, host := range []string{"vault.example.com", "Vault.Example.COM", "10.0.0.5", "fd00::5"} {
		mustRender(t, `fsm: {certificateProvider: {kind: vault}, vault: {host: "`+host+`", token: t}}`)
	}
}
