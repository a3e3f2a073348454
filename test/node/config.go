package node

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbasev1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Addresses of the node's networks. They are private ranges no host route
// here uses; the bridge carries NodeIP so that the apiserver, the kubelet
// and pods reach one another on it (pods cannot reach the host's loopback).
const (
	PodCIDR     = "10.88.0.0/16"
	NodeIP      = "10.88.0.1"
	ServiceCIDR = "10.96.0.0/16"
	// KubernetesServiceIP is the ClusterIP of default/kubernetes, the first
	// address of ServiceCIDR.
	KubernetesServiceIP = "10.96.0.1"
	// NodeName is the one node's name.
	NodeName = "node1"
	// BridgeName is the host bridge the pods' veths attach to.
	BridgeName = "fsmnode0"
	// PauseImage is the sandbox image containerd is configured with and the
	// harness imports. A "localhost/" name: were it ever missing, containerd
	// would try loopback rather than the internet.
	PauseImage = "localhost/fsm-node/pause:v1"
	// ToolboxImage runs test/images/toolbox (serve, get, pause).
	ToolboxImage = "localhost/fsm-node/toolbox:v1"
)

// containerdConfig is containerd 1.6's configuration: everything under dir,
// the CRI plugin on cgroupfs with runc, CNI from Debian's plugins.
func containerdConfig(dir string) string {
	// restrict_oom_score_adj: the machine's bounding set lacks
	// CAP_SYS_RESOURCE, so the sandbox's oom_score_adj of -998 cannot be
	// written ("can't get final child's PID from pipe: EOF"); this clamps
	// it to containerd's own.
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[5]q
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
`, dir+"/root", dir+"/state", dir+"/containerd.sock", PauseImage, cniBinDir, dir+"/net.d")
}

// cniConfig is the pod network: a bridge holding NodeIP as the pods' gateway,
// host-local addresses from PodCIDR, hairpin so a pod reaches itself through
// its Service, portmap for hostPorts. containerd adds loopback itself.
func cniConfig(ipamDir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "fsm-node",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": PodCIDR, "gateway": NodeIP}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
}

// kubeletConfig is the kubelet's configuration for this machine (see
// /work/shared/node-recipe.md for why each setting is needed).
func kubeletConfig(containerdSock, podLogsDir string, clusterDNS bool) ([]byte, error) {
	c := kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		// The machine is cgroup v1, which the kubelet refuses by default.
		FailCgroupV1:             ptr.To(false),
		CgroupDriver:             "cgroupfs",
		ContainerRuntimeEndpoint: "unix://" + containerdSock,
		FailSwapOn:               ptr.To(false),
		// Serve exec/logs on the node address only, to the apiserver
		// (anonymous: the apiserver has no kubelet client certificate).
		Address:            NodeIP,
		Port:               10250,
		ReadOnlyPort:       0,
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To[int32](10248),
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(true)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:          kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},
		CgroupsPerQOS:          ptr.To(true),
		EnforceNodeAllocatable: []string{"pods"},
		// The disk and memory of a shared test machine are not the node's:
		// evict only when nearly nothing is left, and never collect the
		// locally built images (they cannot be pulled back).
		EvictionHard: map[string]string{
			"memory.available":  "1Mi",
			"nodefs.available":  "1%",
			"imagefs.available": "1%",
			"nodefs.inodesFree": "1%",
		},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		ResolverConfig:              ptr.To("/etc/resolv.conf"),
		PodLogsDir:                  podLogsDir,
	}
	if clusterDNS {
		c.ClusterDNS, c.ClusterDomain = []string{ClusterDNSIP}, ClusterDomain
	}
	return yaml.Marshal(c)
}

// kubeProxyConfig is kube-proxy in iptables mode for the pod network, with
// its listeners on loopback and without the host settings it would
// otherwise change (conntrack sizes, route_localnet for localhost
// NodePorts).
func kubeProxyConfig(kubeconfig string) ([]byte, error) {
	c := kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		Mode:               "iptables",
		ClusterCIDR:        PodCIDR,
		HostnameOverride:   NodeName,
		BindAddress:        NodeIP,
		HealthzBindAddress: "127.0.0.1:10256",
		MetricsBindAddress: "127.0.0.1:10249",
		ClientConnection:   componentbasev1alpha1.ClientConnectionConfiguration{Kubeconfig: kubeconfig},
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{
			MaxPerCore:            ptr.To[int32](0),
			TCPEstablishedTimeout: &metav1.Duration{},
			TCPCloseWaitTimeout:   &metav1.Duration{},
		},
		IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{
			LocalhostNodePorts: ptr.To(false),
		},
	}
	return yaml.Marshal(c)
}
