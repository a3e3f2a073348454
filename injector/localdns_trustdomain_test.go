package injector

import (
	"reflect"
	"testing"
)

// TestLocalDNSSearchUsesTrustDomain: spec.sidecar.localDNSProxy.enable
// with a trust domain (--trust-domain, chart fsm.trustDomain) other than the
// cluster domain.
//
// FSM v1.5.1 (pkg/sidecar/v1/providers/pipy/driver/pipy_container.go,
// getPipySidecarContainerSpec) builds the pod's dnsConfig from
// injCtx.CertManager.GetTrustDomain() (the injector's --trust-domain):
// searches <ns>.svc.<trustDomain>, svc.<trustDomain>, <trustDomain>, and
// ndots = len(strings.Split(trustDomain, "."))+3. It has no cluster-domain
// setting. Ours used Mesh.ClusterDomain and a fixed ndots of 5, so the same
// chart values gave a different resolv.conf (found by a review against
// FSM's source).
func TestLocalDNSSearchUsesTrustDomain(t *testing.T) {
	m := testMesh
	m.TrustDomain = "mesh.example.org"
	m.ClusterDomain = "cluster.local"
	s := DefaultSettings()
	s.LocalDNSProxy = true
	mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: m,
		ProxyUUID: "u-1", ControllerService: testControllerService()})
	if err != nil {
		t.Fatal(err)
	}
	dc := mut.Pod.Spec.DNSConfig
	if dc == nil {
		t.Fatal("no dnsConfig")
	}
	wantSearches := []string{"app.svc.mesh.example.org", "svc.mesh.example.org", "mesh.example.org"}
	ndots := ""
	for _, o := range dc.Options {
		if o.Name == "ndots" && o.Value != nil {
			ndots = *o.Value
		}
	}
	if !reflect.DeepEqual(dc.Searches, wantSearches) || ndots != "6" {
		t.Errorf("FSM v1.5.1 (pipy_container.go getPipySidecarContainerSpec) sets searches %v and ndots 6 "+
			"(trust domain %q: 3 labels + 3); ours: searches %v, ndots %q", wantSearches, m.TrustDomain, dc.Searches, ndots)
	}
}
