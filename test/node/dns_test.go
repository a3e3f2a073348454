//go:build e2enode

package node

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestCoreDNSServesServices runs the node's CoreDNS build and Corefile
// against a real apiserver (on loopback, without the node): a Service's
// name resolves to its ClusterIP, as pods will look it up.
func TestCoreDNSServesServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := meshassets.CoreDNS(ctx, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{})
	svc, err := env.Clientset.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(cf, []byte(corefile("127.0.0.1", port, kubeconfig)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", cf)
	log, err := os.Create(filepath.Join(dir, "coredns.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("coredns log:\n%s", tailFile(log.Name(), 30))
		}
	})
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}}
	name := "web.default.svc." + ClusterDomain
	var last error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		addrs, err := resolver.LookupHost(ctx, name)
		if err == nil && slices.Contains(addrs, svc.Spec.ClusterIP) {
			return
		}
		last = err
		if err == nil {
			t.Fatalf("%s resolved to %v, want the Service's ClusterIP %s", name, addrs, svc.Spec.ClusterIP)
		}
	}
	t.Fatalf("%s did not resolve within 2 min: %v", name, last)
}
