package chart_test

import (
	"reflect"
	"strings"
	"testing"
)

// TestVaultTokenChangeRollsServers: `fsm.vault.token` is FSM's set
// option for the token (seeds fsm-certificate-management.md: "--set
// fsm.vault.token - token to be used by FSM to connect to Vault"). FSM's chart
// passes it as --vault-token in the pod template, so `helm upgrade --set
// fsm.vault.token=<new>` rolls the pods onto the new token. This chart keeps
// it in Secret fsm-vault-token, which the servers read once at start
// (certs/vault.New): a new token must still change the pod template, or the
// running servers keep the old (revoked, expired) token.
func TestVaultTokenChangeRollsServers(t *testing.T) {
	template := func(token string) any {
		r := mustRender(t, "fsm: {certificateProvider: {kind: vault}, vault: {host: vault.example, token: "+token+"}}")
		if sec := mustFind(t, r, "Secret", "fsm-vault-token"); sec == nil {
			t.Fatal("no token Secret")
		}
		return nested(t, mustFind(t, r, "Deployment", "fsm-webhooks"), "spec", "template")
	}
	if reflect.DeepEqual(template("s.old-token"), template("s.new-token")) {
		t.Fatal("fsm.vault.token changed from s.old-token to s.new-token: Secret fsm-vault-token changes, the Deployment's pod template does not; " +
			"helm upgrade leaves the servers on the old token until something else restarts them")
	}
}

// TestVaultTokenAlertSaysWhereTheNewTokenGoes: FSMWebhooksVaultTokenExpiring
// tells on-call where to put a new token. A token given as fsm.vault.token
// lives in Secret fsm-vault-token, which the chart renders from the value:
// a token written there by hand is taken at once, but the next helm upgrade
// (even --reuse-values) writes the old value back, and the servers switch
// back to it while Vault still accepts it, or start on it at their next
// restart once it has expired. So with fsm.vault.token the
// alert must send the operator to the value, and with fsm.vault.secret to
// that Secret by name.
func TestVaultTokenAlertSaysWhereTheNewTokenGoes(t *testing.T) {
	for _, tc := range []struct {
		name, vault   string
		want, wantNot []string
	}{
		{"token as a value", "{host: vault.example, token: s.token}",
			[]string{"--set fsm.vault.token=", "do not edit Secret fsm-vault-token"},
			[]string{"Write a new token into the token Secret"}},
		{"token in the operator's Secret", "{host: vault.example, secret: {name: vault-token, key: token}}",
			[]string{"Write a new token into the token Secret (fsm.vault.secret: " + ns + "/vault-token, key token)"},
			[]string{"fsm.vault.token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, "fsm: {certificateProvider: {kind: vault}, vault: "+tc.vault+
				", webhooks: {monitoring: {prometheusRule: {enabled: true}}}}")
			description := ""
			for _, g := range nested(t, mustFind(t, r, "PrometheusRule", "fsm-webhooks"), "spec", "groups").([]any) {
				for _, rule := range g.(map[string]any)["rules"].([]any) {
					if m := rule.(map[string]any); m["alert"] == "FSMWebhooksVaultTokenExpiring" {
						description, _ = m["annotations"].(map[string]any)["description"].(string)
					}
				}
			}
			if description == "" {
				t.Fatal("no FSMWebhooksVaultTokenExpiring description")
			}
			for _, w := range tc.want {
				if !strings.Contains(description, w) {
					t.Errorf("description %q does not say %q", description, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(description, w) {
					t.Errorf("description %q says %q", description, w)
				}
			}
		})
	}
}

// TestVaultTokenAlertWithoutVaultSettings: the alert is rendered for every
// provider, so its wording must not need fsm.vault.secret: a tresor mesh's
// values nulling it (FSM's values carry it empty) rendered nothing at all
// ("nil pointer evaluating interface {}.name").
func TestVaultTokenAlertWithoutVaultSettings(t *testing.T) {
	for _, vault := range []string{"{secret: null}", "null"} {
		r := mustRender(t, "fsm: {vault: "+vault+", webhooks: {monitoring: {prometheusRule: {enabled: true}}}}")
		mustFind(t, r, "PrometheusRule", "fsm-webhooks")
	}
}
