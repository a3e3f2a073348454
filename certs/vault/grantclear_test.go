package vault

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// grantedSeries is fsm_webhooks_vault_ttl_granted_seconds{role}, and
// whether that series exists.
func grantedSeries(t *testing.T, role string) (float64, bool) {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() {
		grantedValidity.Collect(ch)
		close(ch)
	}()
	value, found := 0.0, false
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "role" && l.GetValue() == role {
				value, found = pb.GetGauge().GetValue(), true
			}
		}
	}
	return value, found
}

// TestGrantedGaugeClearsOnceRoleRaised: against a real Vault, the granted
// gauge shows the role's clamp while it holds, stays through a certificate
// asked for less than that grant (which proves nothing of the limit), and is
// dropped once the operator raises max_ttl as the log line says and a
// certificate is issued as asked: an alert on it clears. Before, the gauge
// kept the old 24h forever.
func TestGrantedGaugeClearsOnceRoleRaised(t *testing.T) {
	ctx := context.Background()
	const role = "raised" // a label no other test uses
	srv := vaultdev.New(t)
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: role, MaxTTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	i, err := New(ctx, Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: role, Token: srv.Token, MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string, validity time.Duration) {
		t.Helper()
		if _, err := i.Issue(ctx, certs.Request{CommonName: cn, DNSNames: []string{cn}, Validity: validity, Usage: certs.UsageServer}); err != nil {
			t.Fatalf("%s for %s: %v", cn, validity, err)
		}
	}

	issue("fsm-injector.fsm-system.svc", 87600*time.Hour)
	if got, ok := grantedSeries(t, role); !ok || got < (24*time.Hour-5*time.Second).Seconds() || got > (24*time.Hour).Seconds() {
		t.Fatalf("after a clamp: granted{role=%q} = %v (present %v), want about 86400", role, got, ok)
	}

	issue("p1.sidecar.sa.bookstore.cluster.local", time.Hour)
	if got, ok := grantedSeries(t, role); !ok || got < (24*time.Hour-5*time.Second).Seconds() {
		t.Fatalf("after a 1h certificate issued as asked: granted{role=%q} = %v (present %v), want the 24h clamp kept", role, got, ok)
	}

	if _, err := admin.Logical().JSONMergePatch(ctx, "pki/roles/"+role, map[string]any{"max_ttl": "87600h"}); err != nil {
		t.Fatal(err)
	}
	// Cut at the root's end (a minute before it), not by the role.
	issue("fsm-injector.fsm-system.svc", 87600*time.Hour)
	if got, ok := grantedSeries(t, role); ok {
		t.Errorf("after max_ttl was raised and a certificate issued as asked: granted{role=%q} = %v, want no series", role, got)
	}

	// A clamp after that sets it again.
	if _, err := admin.Logical().JSONMergePatch(ctx, "pki/roles/"+role, map[string]any{"max_ttl": "2h"}); err != nil {
		t.Fatal(err)
	}
	issue("fsm-injector.fsm-system.svc", 87600*time.Hour)
	if got, ok := grantedSeries(t, role); !ok || got < (2*time.Hour-5*time.Second).Seconds() || got > (2*time.Hour).Seconds() {
		t.Errorf("after max_ttl was lowered to 2h: granted{role=%q} = %v (present %v), want about 7200", role, got, ok)
	}
}
