package chart_test

import (
	"reflect"
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
