package install_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/fsmroot"
)

// meshCA is FSM's mesh CA as the takeover tests need it: tresor (fsmRoot),
// Vault (vaultCA) or cert-manager (takeover_certmanager_test.go).
type meshCA interface {
	// bundle is the root FSM's servers write into their configurations'
	// caBundle (PEM).
	bundle() []byte
	// secretData is fsm-ca-bundle as FSM leaves it; nil: FSM leaves none.
	secretData() map[string][]byte
	// serving is what FSM's webhook servers serve: a cert for dnsName that
	// chains to bundle.
	serving(t *testing.T, dnsName string) tls.Certificate
	// values are the chart's fsm.* values for this provider, as the user
	// carries them over from FSM's release; nil for the chart's default.
	values() map[string]any
}

// fsmRoot is a mesh root as FSM v1.5.1's Tresor makes it (test/fsmroot).
type fsmRoot struct{ fsmroot.Root }

func newFSMRoot(t *testing.T) fsmRoot { return fsmRoot{fsmroot.Must(t)} }

func (r fsmRoot) bundle() []byte { return r.CertPEM }

// values: tresor is the chart's default provider.
func (fsmRoot) values() map[string]any { return nil }

// secretData is fsm-ca-bundle in FSM's key layout.
func (r fsmRoot) secretData() map[string][]byte { return r.SecretData() }

// serving is what FSM's webhook servers serve (pkg/webhook/server.go): a
// cert for <service>.<namespace>.svc issued from the mesh root, whose
// configurations carry that root as caBundle.
func (r fsmRoot) serving(t *testing.T, dnsName string) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, &key.PublicKey, r.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// backend is a pod as the endpoints controller and kube-proxy see it: its
// labels, its ports (by name and by number) served on loopback, and its
// readiness.
type backend struct {
	name   string
	labels map[string]string
	ports  map[string]string // Service targetPort (name or number) -> 127.0.0.1:port
	ready  func() bool
}

// clusterNet stands in for the endpoints controller and kube-proxy. The
// apiserver reaches every webhook through it (its egress selector sends the
// "cluster" traffic as HTTP CONNECT to ClusterIP:port): a connection goes to
// a Ready pod the Service selects, or is refused when there is none, as a
// real cluster refuses a Service without endpoints. Established connections
// stay with their pod, as conntrack keeps them.
type clusterNet struct {
	c        client.Client
	refused  atomic.Int64 // connections refused (logged: the first few)
	mu       sync.Mutex
	backends map[string]*backend
}

func (n *clusterNet) set(b *backend) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.backends[b.name] = b
}

func (n *clusterNet) remove(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.backends, name)
}

// route resolves ClusterIP:port to a Ready pod's address.
func (n *clusterNet) route(ctx context.Context, hostport string) (string, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return hostport, nil // a URL-registered webhook of the test
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", err
	}
	var svcs corev1.ServiceList
	if err := n.c.List(ctx, &svcs); err != nil {
		return "", err
	}
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP != host {
			continue
		}
		for _, p := range s.Spec.Ports {
			if int(p.Port) != port {
				continue
			}
			target := p.TargetPort.String()
			if p.TargetPort.IntValue() == 0 && p.TargetPort.StrVal == "" {
				target = strconv.Itoa(port)
			}
			sel := labels.SelectorFromSet(s.Spec.Selector)
			n.mu.Lock()
			var candidates []*backend
			for _, b := range n.backends {
				if len(s.Spec.Selector) > 0 && sel.Matches(labels.Set(b.labels)) && b.ports[target] != "" {
					candidates = append(candidates, b)
				}
			}
			n.mu.Unlock()
			for _, b := range candidates {
				if s.Spec.PublishNotReadyAddresses || b.ready() {
					return b.ports[target], nil
				}
			}
			return "", fmt.Errorf("service %s/%s port %d: no ready endpoint", s.Namespace, s.Name, port)
		}
	}
	return "", fmt.Errorf("no Service has ClusterIP %s and port %d", host, port)
}

// serve answers CONNECT requests on l until it is closed.
func (n *clusterNet) serve(t *testing.T, l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = conn.Close() }()
			br := bufio.NewReader(conn)
			req, err := http.ReadRequest(br)
			if err != nil || req.Method != http.MethodConnect {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addr, err := n.route(ctx, req.Host)
			cancel()
			if err != nil {
				if n.refused.Add(1) <= 3 {
					t.Logf("clusterNet: %s refused: %v", req.Host, err)
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
				return
			}
			up, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Logf("clusterNet: %s -> %s: %v", req.Host, addr, err)
				_, _ = io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
				return
			}
			defer func() { _ = up.Close() }()
			if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
				return
			}
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
			go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// startClusterNet listens on a Unix socket and returns the kube-apiserver
// flag that sends the "cluster" egress (webhooks) through it.
func startClusterNet(t *testing.T) (*clusterNet, map[string]string) {
	t.Helper()
	// Not t.TempDir(): a Unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "fsmnet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	n := &clusterNet{backends: map[string]*backend{}}
	go n.serve(t, l)
	cfg := filepath.Join(dir, "egress.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: `+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return n, map[string]string{"egress-selector-config-file": cfg}
}
