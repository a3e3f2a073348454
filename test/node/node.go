// Package node runs a single-node Kubernetes cluster built from parts, for
// tests that need workloads to really run: envtest's kube-apiserver and etcd
// plus kube-controller-manager and kube-scheduler, a kubelet on Debian's
// containerd 1.6 and runc, Debian's CNI plugins on a host bridge, and
// kube-proxy in iptables mode (and, on request, CoreDNS behind the kube-dns
// Service: dns.go). Every Kubernetes binary is built from the
// k8s.io/kubernetes module by internal/kubeassets; every image is built on the
// machine by test/images and imported into containerd. Nothing is pulled.
//
// The node changes the host (bridge, iptables chains, cgroups, sysctls, the
// fixed paths the kubelet and containerd write); Start records the state
// first and the cleanup it registers undoes every change, so it needs root
// and runs one node per machine at a time. Without root or cgroups it skips
// with one line; anything else that goes wrong fails the test with the log
// file of the component concerned.
//
// The recipe this follows, verified on the development machines, is
// /work/shared/node-recipe.md.
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// Options tune the cluster.
type Options struct {
	// Images are built and imported into containerd before the kubelet
	// starts, besides PauseImage and ToolboxImage.
	Images []images.Spec
	// Pulls are published images pulled with `ctr images pull` instead of
	// built (e.g. meshimages.Published): the fully qualified name pods use
	// → the fully qualified reference to pull, tagged with that name.
	Pulls map[string]string
	// Scheme decodes objects for Client (client-go's scheme if nil).
	Scheme *runtime.Scheme
	// ClusterDNS runs CoreDNS behind kube-system/kube-dns (ClusterDNSIP)
	// and makes it the pods' nameserver; without it pods get the host's
	// resolv.conf.
	ClusterDNS bool
}

// Cluster is a running single-node cluster.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config    *rest.Config
	Client    client.Client
	Clientset kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file (for Helm).
	Kubeconfig string
	// LogDir holds one log file per component; it is kept when the test
	// fails.
	LogDir string
	// Timings of Start's phases, for the harness's own figures.
	Timings []Timing

	t          testing.TB
	dir        string // state: removed at cleanup
	assetDir   string
	ctrdDir    string
	env        *envtest.Environment
	procs      []*proc
	logs       []*os.File // of envtest's processes, closed at teardown
	host       *hostState
	teardownOK bool
	clusterDNS bool
}

// Timing is how long one phase of Start took.
type Timing struct {
	Phase    string
	Duration time.Duration
}

const (
	startTimeout = 45 * time.Minute // includes building cold assets
	readyTimeout = 2 * time.Minute  // per component once its binary exists
	stopTimeout  = 20 * time.Second
)

// Start brings the cluster up and registers its teardown with t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if why := cannotRun(); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := &Cluster{t: t}
	phase := time.Now()
	mark := func(name string) {
		c.Timings = append(c.Timings, Timing{name, time.Since(phase)})
		phase = time.Now()
	}
	unlock, err := hostLock(ctx, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock) // registered first: released after the teardown
	if err := ensurePackages(ctx, os.Stderr); err != nil {
		t.Fatal(err)
	}
	mark("packages")
	kubeDir, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("node: kube-apiserver/etcd not available (run `go run ./internal/kubeassets/build --node`): %v", err)
	}
	if c.assetDir, err = kubeassets.Node(ctx, os.Stderr); err != nil {
		t.Fatalf("node: node binaries not available (run `go run ./internal/kubeassets/build --node`): %v", err)
	}
	var corednsBin string
	if opts.ClusterDNS {
		if corednsBin, err = meshassets.CoreDNS(ctx, os.Stderr); err != nil {
			t.Fatalf("node: CoreDNS not available (run `go run ./test/meshassets/build`): %v", err)
		}
		c.clusterDNS = true
	}
	mark("assets")

	if c.dir, err = os.MkdirTemp("", "fsm-node-"); err != nil {
		t.Fatal(err)
	}
	if c.LogDir, err = os.MkdirTemp("", "fsm-node-logs-"); err != nil {
		t.Fatal(err)
	}
	// From here on the teardown undoes whatever part of Start happened.
	t.Cleanup(c.teardown)
	tarballs, err := c.buildImages(ctx, opts.Images)
	if err != nil {
		t.Fatal(err)
	}
	mark("images")

	if c.host, err = snapshotHost(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.network(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.startContainerd(ctx, tarballs, opts.Pulls); err != nil {
		t.Fatal(err)
	}
	mark("containerd+import")
	if err := c.startAPIServer(kubeDir, opts.Scheme); err != nil {
		t.Fatal(err)
	}
	mark("apiserver")
	if err := c.startComponents(ctx); err != nil {
		t.Fatal(err)
	}
	if c.clusterDNS {
		if err := c.startDNS(ctx, corednsBin); err != nil {
			t.Fatal(err)
		}
	}
	mark("node ready")
	var total time.Duration
	for _, tm := range c.Timings {
		total += tm.Duration
	}
	t.Logf("node: %s Ready in %s %v; logs in %s", NodeName, total.Round(100*time.Millisecond), c.Timings, c.LogDir)
	return c
}

func (c *Cluster) buildImages(ctx context.Context, extra []images.Spec) ([]string, error) {
	dir := filepath.Join(c.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	toolbox := filepath.Join(dir, "toolbox")
	if err := images.GoBinary(ctx, testenv.RepoRoot(), "./test/images/toolbox", toolbox); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	specs := append([]images.Spec{
		{Tag: PauseImage, Files: []images.File{{Path: "/pause", Source: toolbox, Mode: 0o755}}, Entrypoint: []string{"/pause", "pause"}},
		{Tag: ToolboxImage, Files: []images.File{{Path: "/toolbox", Source: toolbox, Mode: 0o755}}, Entrypoint: []string{"/toolbox"}},
	}, extra...)
	var out []string
	for i, s := range specs {
		p := filepath.Join(dir, "image-"+strconv.Itoa(i)+".tar")
		if err := images.Write(s, p); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// network puts NodeIP on a bridge before anything starts: the apiserver
// listens on it (pods reach it there through the kubernetes Service), and the
// CNI bridge plugin adopts the existing bridge as the pods' gateway.
func (c *Cluster) network(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "add", BridgeName, "type", "bridge"},
		{"addr", "add", NodeIP + "/" + strings.SplitN(PodCIDR, "/", 2)[1], "dev", BridgeName},
		{"link", "set", BridgeName, "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("node: creating bridge %s: %w", BridgeName, err)
		}
	}
	c.host.bridgeCreated = true
	// Pods reach Services and the apiserver through the host.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("node: enabling net.ipv4.ip_forward: %w", err)
	}
	return nil
}

func (c *Cluster) startContainerd(ctx context.Context, tarballs []string, pulls map[string]string) error {
	c.ctrdDir = filepath.Join(c.dir, "containerd")
	for _, d := range []string{c.ctrdDir + "/net.d", c.ctrdDir + "/ipam"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cni, err := cniConfig(c.ctrdDir + "/ipam")
	if err != nil {
		return err
	}
	cfg := filepath.Join(c.ctrdDir, "config.toml")
	if err := os.WriteFile(cfg, []byte(containerdConfig(c.ctrdDir)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.ctrdDir, "net.d", "10-fsm-node.conflist"), cni, 0o644); err != nil {
		return err
	}
	p, err := c.spawn("containerd", "/usr/bin/containerd", "--config", cfg)
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd to serve", readyTimeout, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	}, p); err != nil {
		return err
	}
	for _, tb := range tarballs {
		if _, err := c.ctr(ctx, "-n", "k8s.io", "images", "import", tb); err != nil {
			return fmt.Errorf("node: importing %s: %w (containerd log: %s)", tb, err, p.logPath)
		}
	}
	for _, args := range pullCommands(pulls) {
		if _, err := c.ctr(ctx, args...); err != nil {
			return fmt.Errorf("node: ctr %s: %w (containerd log: %s)", strings.Join(args, " "), err, p.logPath)
		}
	}
	return nil
}

// pullCommands are the ctr arguments that pull each published image and,
// when its reference is not the name the pods use, tag it with that name,
// in a stable order.
func pullCommands(pulls map[string]string) [][]string {
	var out [][]string
	for _, name := range slices.Sorted(maps.Keys(pulls)) {
		ref := pulls[name]
		out = append(out, []string{"-n", "k8s.io", "images", "pull", ref})
		if ref != name {
			out = append(out, []string{"-n", "k8s.io", "images", "tag", "--force", ref, name})
		}
	}
	return out
}

func (c *Cluster) containerdSock() string { return filepath.Join(c.ctrdDir, "containerd.sock") }

func (c *Cluster) ctr(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "/usr/bin/ctr", append([]string{"--address", c.containerdSock()}, args...)...)
}

// Crictl runs crictl against the node's containerd (e.g. "stop", id).
func (c *Cluster) Crictl(ctx context.Context, args ...string) ([]byte, error) {
	ep := "unix://" + c.containerdSock()
	return run(ctx, filepath.Join(c.assetDir, "crictl"),
		append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "30s"}, args...)...)
}

func (c *Cluster) startAPIServer(kubeDir string, scheme *runtime.Scheme) error {
	certDir := filepath.Join(c.dir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	caPEM, err := apiserverPKI(certDir)
	if err != nil {
		return err
	}
	port, err := freePort(NodeIP)
	if err != nil {
		return err
	}
	apiLog, err := c.logFile("kube-apiserver")
	if err != nil {
		return err
	}
	etcdLog, err := c.logFile("etcd")
	if err != nil {
		return err
	}
	c.logs = append(c.logs, apiLog, etcdLog)
	env := &envtest.Environment{
		BinaryAssetsDirectory:    kubeDir,
		ControlPlaneStartTimeout: readyTimeout,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   scheme,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}
	testenv.TuneEtcd(env.ControlPlane.Etcd)
	api := env.ControlPlane.GetAPIServer()
	testenv.TuneAPIServer(api)
	api.Out, api.Err = apiLog, apiLog
	api.CertDir = certDir
	api.Address = NodeIP
	api.Port = strconv.Itoa(port)
	api.CA = caPEM
	api.Configure().
		Set("advertise-address", NodeIP).
		Set("service-cluster-ip-range", ServiceCIDR).
		// exec/logs dial the node by its InternalIP, not its name.
		Set("kubelet-preferred-address-types", "InternalIP,Hostname").
		// envtest turns ServiceAccount admission off because it runs no
		// controller-manager; here one creates every namespace's default
		// ServiceAccount and pods get their API tokens as in a cluster.
		Disable("disable-admission-plugins")
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("node: starting kube-apiserver and etcd from %s: %w (logs: %s, %s)", kubeDir, err, apiLog.Name(), etcdLog.Name())
	}
	c.env = env
	cfg.Timeout = time.Minute
	c.Config = cfg
	c.Kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		return err
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	return nil
}

// startComponents starts kube-controller-manager, kube-scheduler,
// kube-proxy and the kubelet, and waits until each serves and the node is
// Ready.
func (c *Cluster) startComponents(ctx context.Context) error {
	certDir := filepath.Join(c.dir, "apiserver")
	kc := c.Kubeconfig
	kcm, err := c.startSecure(ctx, "kube-controller-manager", filepath.Join(c.dir, "kcm"), func(port int) []string {
		return []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--controllers=*", "--use-service-account-credentials=false",
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port), "--cert-dir=" + filepath.Join(c.dir, "kcm"),
			"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
			"--root-ca-file=" + filepath.Join(certDir, "ca.crt"),
			"--cluster-name=fsm-node", "--service-cluster-ip-range=" + ServiceCIDR}
	})
	if err != nil {
		return err
	}
	if _, err := c.startSecure(ctx, "kube-scheduler", filepath.Join(c.dir, "scheduler"), func(port int) []string {
		return []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(c.dir, "scheduler")}
	}); err != nil {
		return err
	}

	kubeletDir := filepath.Join(c.dir, "kubelet")
	kcfg, err := kubeletConfig(c.containerdSock(), filepath.Join(c.dir, "pod-logs"), c.clusterDNS)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(kubeletDir, 0o755); err != nil {
		return err
	}
	kcfgPath := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(kcfgPath, kcfg, 0o644); err != nil {
		return err
	}
	kubelet, err := c.spawn("kubelet", filepath.Join(c.assetDir, "kubelet"),
		"--config="+kcfgPath, "--kubeconfig="+kc, "--hostname-override="+NodeName, "--node-ip="+NodeIP,
		"--root-dir="+kubeletDir, "--cert-dir="+filepath.Join(kubeletDir, "pki"))
	if err != nil {
		return err
	}
	// After the kubelet, so that kube-proxy finds its Node soon.
	proxyCfg, err := kubeProxyConfig(kc)
	if err != nil {
		return err
	}
	proxyCfgPath := filepath.Join(c.dir, "kube-proxy.yaml")
	if err := os.WriteFile(proxyCfgPath, proxyCfg, 0o644); err != nil {
		return err
	}
	proxy, err := c.spawn("kube-proxy", filepath.Join(c.assetDir, "kube-proxy"), "--config="+proxyCfgPath)
	if err != nil {
		return err
	}

	for _, h := range []struct {
		p   *proc
		url string
	}{
		{kubelet, "http://127.0.0.1:10248/healthz"},
		{proxy, "http://127.0.0.1:10256/healthz"},
	} {
		if err := c.waitFor(ctx, h.p.name+" to be healthy at "+h.url, readyTimeout, func(ctx context.Context) error {
			return healthz(ctx, h.url)
		}, h.p); err != nil {
			return err
		}
	}
	if err := c.waitFor(ctx, "node "+NodeName+" to be Ready", readyTimeout, func(ctx context.Context) error {
		n, err := c.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("condition Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	}, kubelet); err != nil {
		return err
	}
	// Pods need their namespace's default ServiceAccount (ServiceAccount
	// admission) and the kube-root-ca.crt ConfigMap (their token volume).
	return c.waitNamespaceReady(ctx, metav1.NamespaceDefault, kcm)
}

// CreateNamespace creates a namespace and waits until pods can be created
// in it: kube-controller-manager has made its default ServiceAccount and
// published kube-root-ca.crt into it.
func (c *Cluster) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node: creating namespace %s: %v", name, err)
	}
	if err := c.waitNamespaceReady(ctx, name, c.proc("kube-controller-manager")); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) waitNamespaceReady(ctx context.Context, ns string, kcm *proc) error {
	return c.waitFor(ctx, "namespace "+ns+" to get its default ServiceAccount and kube-root-ca.crt", readyTimeout, func(ctx context.Context) error {
		if _, err := c.Clientset.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := c.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	}, kcm)
}

// LogPath is the log file of a component: kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler, kubelet, kube-proxy, containerd.
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.LogDir, component+".log")
}

// dumpPods writes, for every pod in every namespace, its phase and the log
// of each container (the previous instance's too after a restart), then
// every event, to LogDir/pods.log and returns that path. Teardown calls it
// on failure while the kubelet still serves logs: pods that failed (a hook
// Job's, say) are otherwise gone with the node.
func (c *Cluster) dumpPods(ctx context.Context) (string, error) {
	path := c.LogPath("pods")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }() // best effort: a failed test's evidence
	pods, err := c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return path, fmt.Errorf("listing pods: %w", err)
	}
	for _, p := range pods.Items {
		fmt.Fprintf(f, "=== pod %s/%s phase=%s reason=%q message=%q\n", p.Namespace, p.Name, p.Status.Phase, p.Status.Reason, p.Status.Message)
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, s := range statuses {
			fmt.Fprintf(f, "--- container %s restarts=%d state=%+v lastState=%+v\n", s.Name, s.RestartCount, s.State, s.LastTerminationState)
			for _, previous := range []bool{true, false} {
				if previous && s.RestartCount == 0 {
					continue
				}
				logs, err := c.Clientset.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: s.Name, Previous: previous}).DoRaw(ctx)
				if err != nil {
					fmt.Fprintf(f, "(logs, previous=%t: %v)\n", previous, err)
					continue
				}
				fmt.Fprintf(f, "--- logs previous=%t\n%s\n", previous, logs)
			}
		}
	}
	events, err := c.Clientset.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return path, fmt.Errorf("listing events: %w", err)
	}
	fmt.Fprintf(f, "=== events\n")
	for _, e := range events.Items {
		fmt.Fprintf(f, "%s %s %s/%s %s x%d: %s\n", e.LastTimestamp.UTC().Format(time.RFC3339), e.Type,
			e.InvolvedObject.Kind, e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name, e.Reason, e.Count, e.Message)
	}
	return path, nil
}

func (c *Cluster) logFile(name string) (*os.File, error) {
	return os.OpenFile(c.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// startSecure starts the component name with args(port) on a free loopback
// port and waits until it answers /healthz there with the self-signed
// certificate it wrote to certDir. The certificate check matters: a free
// port is only free when asked, other tests on the machine start apiservers
// on random ports, and one of those once answered the health check for a
// kube-scheduler that had failed to bind ("address already in use"), leaving
// every pod Pending. A start that lost its port that way is retried on
// another.
func (c *Cluster) startSecure(ctx context.Context, name, certDir string, args func(port int) []string) (*proc, error) {
	const attempts = 3
	for i := 1; ; i++ {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		p, err := c.spawn(name, filepath.Join(c.assetDir, name), args(port)...)
		if err != nil {
			return nil, err
		}
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
		certFile := filepath.Join(certDir, name+".crt")
		err = c.waitFor(ctx, name+" to be healthy at "+url, readyTimeout, func(ctx context.Context) error {
			return healthzFrom(ctx, url, certFile)
		}, p)
		if err == nil {
			return p, nil
		}
		if exited, _ := p.exited(); !exited || i == attempts || !strings.Contains(tailFile(p.logPath, 5), "address already in use") {
			return nil, err
		}
		// The teardown stops the running one: forget the one that exited.
		c.procs = slices.DeleteFunc(c.procs, func(q *proc) bool { return q == p })
	}
}

// healthzFrom is healthz for a server that must present the certificate in
// certFile (a component's self-signed serving certificate).
func healthzFrom(ctx context.Context, url, certFile string) error {
	want, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("no serving certificate yet: %w", err)
	}
	block, _ := pem.Decode(want)
	if block == nil {
		return fmt.Errorf("%s: no PEM block", certFile)
	}
	return get(ctx, url, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below against the component's own certificate
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, block.Bytes) {
				return fmt.Errorf("the server on %s is not the one that wrote %s", url, certFile)
			}
			return nil
		},
	})
}

func healthz(ctx context.Context, url string) error {
	// The components' loopback health ports serve self-signed certificates.
	return get(ctx, url, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback health check
}

// get wants 200 from url within 5 s.
func get(ctx context.Context, url string, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// freePort asks the kernel for a free TCP port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("node: finding a free port on %s: %w", host, err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check every 200 ms until it succeeds, timeout passes, or a
// watched process exits; the error names what was awaited, the last check
// error and the log files of the watched processes.
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error, watch ...*proc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		for _, p := range watch {
			if p == nil {
				continue
			}
			if exited, err := p.exited(); exited {
				return fmt.Errorf("node: waiting for %s: %s exited (%v); log %s:\n%s", what, p.name, err, p.logPath, tailFile(p.logPath, 30))
			}
		}
		select {
		case <-ctx.Done():
			logs := ""
			for _, p := range watch {
				if p != nil {
					logs += p.logPath + ", "
				}
			}
			return fmt.Errorf("node: %s did not happen within %s: last error: %v (logs: %sall in %s)",
				what, timeout, last, logs, c.LogDir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitFor is waitFor for tests: it fails t with the log directory.
func (c *Cluster) WaitFor(t testing.TB, what string, timeout time.Duration, check func(context.Context) error) {
	t.Helper()
	if err := c.waitFor(context.Background(), what, timeout, check); err != nil {
		t.Fatal(err)
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(b, n)
}

// proc is one component process, in its own process group so that stopping
// it also stops what it started in that group.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	log, err := c.logFile(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig: a test binary killed by its -timeout takes the node's
	// processes with it instead of leaving them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "$ %s %s\n", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("node: starting %s: %w", name, err)
	}
	p := &proc{name: name, logPath: log.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) proc(name string) *proc {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after timeout.
func (p *proc) stop(timeout time.Duration) error {
	if done, _ := p.exited(); done {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, timeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, pgid)
	}
}

// RestartContainerd stops containerd with SIGTERM, as `systemctl restart
// containerd` does, starts it again with the same configuration and waits
// until it serves; it returns how long containerd was away. The containers
// keep running under their shims (each in its own process group, so the
// stop does not reach them) and the kubelet reconnects to the socket.
func (c *Cluster) RestartContainerd(ctx context.Context) (time.Duration, error) {
	old := c.proc("containerd")
	if old == nil {
		return 0, errors.New("node: containerd is not running")
	}
	start := time.Now()
	if err := old.stop(stopTimeout); err != nil {
		return 0, fmt.Errorf("node: stopping containerd: %w", err)
	}
	// The teardown stops the running one: forget the stopped one.
	c.procs = slices.DeleteFunc(c.procs, func(p *proc) bool { return p == old })
	p, err := c.spawn("containerd", "/usr/bin/containerd", "--config", filepath.Join(c.ctrdDir, "config.toml"))
	if err != nil {
		return 0, err
	}
	if err := c.waitFor(ctx, "containerd to serve again", readyTimeout, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	}, p); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Leftovers lists the processes whose command line names this node's state
// directory: every component's flags and every containerd shim's socket
// address do. Called from a t.Cleanup registered before Start (so it runs
// after the teardown), it finds what the teardown left running.
func (c *Cluster) Leftovers() []string {
	if c.dir == "" {
		return nil
	}
	var out []string
	for _, e := range readDirNames("/proc") {
		if _, err := strconv.Atoi(e); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e, "cmdline"))
		if err != nil || !strings.Contains(string(b), c.dir) {
			continue
		}
		out = append(out, e+": "+strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\x00", " ")), " "))
	}
	return out
}
