package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Cluster DNS: CoreDNS (test/meshassets builds it from its module) runs on
// the host on NodeIP:53 with the kubernetes plugin, behind the kube-dns
// Service as in a kubeadm cluster; the kubelet gives pods ClusterDNSIP as
// their nameserver. Meshed pods need it: the sidecar fetches its
// configuration from http://fsm-controller.<fsm namespace>:6060.
const (
	ClusterDNSIP  = "10.96.0.10"
	ClusterDomain = "cluster.local"
	dnsPort       = 53
)

// corefile serves the cluster domain and reverse zones from the apiserver
// and nothing else: the node has no upstream resolver to forward to.
func corefile(bind string, port int, kubeconfig string) string {
	return fmt.Sprintf(`.:%d {
    bind %s
    errors
    log
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s
    }
}
`, port, bind, ClusterDomain, kubeconfig)
}

// startDNS starts CoreDNS, publishes it as kube-system/kube-dns and waits
// until a lookup through the Service's ClusterIP answers (kube-proxy's
// rules included).
func (c *Cluster) startDNS(ctx context.Context, bin string) error {
	cf := filepath.Join(c.dir, "Corefile")
	if err := os.WriteFile(cf, []byte(corefile(NodeIP, dnsPort, c.Kubeconfig)), 0o644); err != nil {
		return err
	}
	p, err := c.spawn("coredns", bin, "-conf", cf)
	if err != nil {
		return err
	}
	ports := []corev1.ServicePort{
		{Name: "dns", Port: dnsPort, Protocol: corev1.ProtocolUDP},
		{Name: "dns-tcp", Port: dnsPort, Protocol: corev1.ProtocolTCP},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns"}},
		// No selector: the endpoint is the host process, published below.
		Spec: corev1.ServiceSpec{ClusterIP: ClusterDNSIP, Ports: ports},
	}
	if _, err := c.Clientset.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("node: creating Service kube-system/kube-dns: %w", err)
	}
	var epPorts []discoveryv1.EndpointPort
	for _, sp := range ports {
		epPorts = append(epPorts, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(sp.Port), Protocol: ptr.To(sp.Protocol)})
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-host", Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			discoveryv1.LabelServiceName: "kube-dns",
			discoveryv1.LabelManagedBy:   "fsm-node-harness",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{NodeIP}, NodeName: ptr.To(NodeName)}},
		Ports:       epPorts,
	}
	if _, err := c.Clientset.DiscoveryV1().EndpointSlices(slice.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("node: creating EndpointSlice kube-system/kube-dns-host: %w", err)
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, net.JoinHostPort(ClusterDNSIP, fmt.Sprint(dnsPort)))
	}}
	name := "kubernetes.default.svc." + ClusterDomain
	return c.waitFor(ctx, "CoreDNS to resolve "+name+" through the kube-dns Service", readyTimeout, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		addrs, err := resolver.LookupHost(ctx, name)
		if err != nil {
			return err
		}
		if !slices.Contains(addrs, KubernetesServiceIP) {
			return fmt.Errorf("%s resolved to %v, want %s", name, addrs, KubernetesServiceIP)
		}
		return nil
	}, p)
}
