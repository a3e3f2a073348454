package install_test

import (
	"slices"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// TestNetworkPolicyOnAPIServer: the NetworkPolicy the chart renders is one the
// kube-apiserver accepts and stores as rendered (IPv4 and IPv6 sources, a
// peer, metrics peers), and turning it off removes it. (This apiserver
// refuses a CIDR with bits set past its prefix, "10.0.0.10/24", failing the
// install midway: the chart refuses it at render instead.) The render tests check
// its rules; whether a CNI enforces them is the cluster's (chart README,
// "Network policy").
func TestNetworkPolicyOnAPIServer(t *testing.T) {
	ctx, env := startAPIServer(t, 5*time.Minute)
	helm := newHelm(t, env)
	values, _ := renderYAML(t, `
fsm:
  webhooks:
    networkPolicy:
      enabled: true
      apiServerCIDRs: [10.0.0.0/28, 192.168.1.7/32, 0.0.0.0/0, "fd00:10::/64"]
      apiServerPeers:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: konnectivity-agent}}
      metricsFrom:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`)
	if _, err := helm.Install(ctx, values); err != nil {
		t.Fatalf("helm install with the NetworkPolicy: %v", err)
	}
	np := &networkingv1.NetworkPolicy{}
	key := types.NamespacedName{Namespace: ns, Name: "fsm-webhooks"}
	if err := env.Client.Get(ctx, key, np); err != nil {
		t.Fatal(err)
	}
	if n := len(np.Spec.Ingress); n != 3 {
		t.Fatalf("%d ingress rules stored, want 3 (webhooks, the converter from the servers, metrics)", n)
	}
	var cidrs []string
	for _, from := range np.Spec.Ingress[0].From {
		if from.IPBlock != nil {
			cidrs = append(cidrs, from.IPBlock.CIDR)
		}
	}
	// The chart's own check of IPv4 host bits (TestNetworkPolicyValuesRejected)
	// lets the edges through: a /32, a /0.
	if want := []string{"10.0.0.0/28", "192.168.1.7/32", "0.0.0.0/0", "fd00:10::/64"}; !slices.Equal(cidrs, want) {
		t.Errorf("webhook sources stored as %v, want %v", cidrs, want)
	}

	values, _ = renderYAML(t, "fsm: {webhooks: {networkPolicy: {enabled: false}}}")
	if _, err := helm.Upgrade(ctx, values); err != nil {
		t.Fatalf("helm upgrade turning the NetworkPolicy off: %v", err)
	}
	if err := env.Client.Get(ctx, key, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("NetworkPolicy after turning it off: %v, want NotFound", err)
	}
}
