// Package cmdev runs cert-manager's real controllers in the test process
// against an envtest apiserver: the issuers controller (an Issuer becomes
// Ready once its CA Secret verifies), the CertificateRequest approver and
// the CA issuer that signs CertificateRequests. It follows the recipe in
// /work/shared/cert-manager-inprocess.md. Tests never sign with a hand-made
// signer: what they get is what cert-manager's CA issuer returns.
package cmdev

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca" // registers the CA issuer; without it Issuers never get a condition
	"github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Workers per controller: cert-manager's own default (--concurrent-workers).
const Workers = 5

// controllers are the ones a namespaced CA Issuer needs, by the names they
// register under.
var controllers = []string{"issuers", "certificaterequests-approver", "certificaterequests-issuer-ca"}

// CRDs is the directory of cert-manager's CRDs in the module cache (plain
// v1 YAML, no conversion webhook), for testenv.Options.CRDDirectoryPaths or
// envtest.InstallCRDs.
func CRDs(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("locating the cert-manager module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
}

// Start runs cert-manager's issuers, approver and CA issuer controllers for
// namespace ns until the test ends.
func Start(t testing.TB, kubeconfig []byte, ns string) {
	t.Helper()
	start(t, kubeconfig, ns, ns, controllers)
}

// StartCluster runs them for every namespace, with the clusterissuers
// controller, as cert-manager is installed: a ClusterIssuer's CA Secret
// lives in clusterResourceNamespace (cert-manager's own namespace), not in
// the namespace of the CertificateRequests.
func StartCluster(t testing.TB, kubeconfig []byte, clusterResourceNamespace string) {
	t.Helper()
	start(t, kubeconfig, "", clusterResourceNamespace, append([]string{"clusterissuers"}, controllers...))
}

// start runs the named controllers. Order matters: the factory, then the
// constructors (they request the informers), then the informers, then Run,
// then the cache sync.
func start(t testing.TB, kubeconfig []byte, ns, clusterResourceNamespace string, controllers []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// Not testr: controller goroutines outlive the test.
	ctx, cancel := context.WithCancel(logs.NewContext(context.Background(), logr.Discard()))
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig: path, KubernetesAPIQPS: 100, KubernetesAPIBurst: 200, Namespace: ns,
		IssuerOptions: controller.IssuerOptions{ClusterResourceNamespace: clusterResourceNamespace},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var ctrls []controller.Interface
	for _, name := range controllers {
		ctor, ok := controller.Known()[name]
		if !ok {
			cancel()
			t.Fatalf("cert-manager controller %q not registered", name)
		}
		c, err := ctor(factory)
		if err != nil {
			cancel()
			t.Fatalf("constructing cert-manager controller %s: %v", name, err)
		}
		ctrls = append(ctrls, c)
	}
	base, err := factory.Build()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	for _, c := range ctrls {
		wg.Go(func() { _ = c.Run(Workers, ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		base.SharedInformerFactory.Shutdown()
		base.KubeSharedInformerFactory.Shutdown()
	})
	for typ, ok := range base.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cert-manager informer %v did not sync", typ)
		}
	}
	for typ, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("kube informer %v did not sync", typ)
		}
	}
}

// WaitIssuerReady waits (up to timeout) until Issuer ns/name is Ready, as
// the issuers controller sets it once the CA Secret verifies, and fails t
// with the Issuer's last condition otherwise.
func WaitIssuerReady(t testing.TB, cm cmclient.Interface, ns, name string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w, err := cm.CertmanagerV1().Issuers(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var last []cmapi.IssuerCondition
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok && ctx.Err() == nil {
				t.Fatalf("Issuer %s/%s: watch closed before Ready; conditions %+v", ns, name, last)
			}
			if !ok {
				t.Fatalf("Issuer %s/%s not Ready within %s; conditions %+v", ns, name, timeout, last)
			}
			iss, ok := ev.Object.(*cmapi.Issuer)
			if !ok {
				continue
			}
			last = iss.Status.Conditions
			for _, c := range last {
				if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
					return
				}
			}
		case <-ctx.Done():
			t.Fatalf("Issuer %s/%s not Ready within %s; conditions %+v", ns, name, timeout, last)
		}
	}
}

// WaitClusterIssuerReady waits (up to timeout) until ClusterIssuer name is
// Ready, as the clusterissuers controller sets it once the CA Secret in the
// cluster resource namespace verifies, and fails t with its last condition
// otherwise.
func WaitClusterIssuerReady(t testing.TB, cm cmclient.Interface, name string, timeout time.Duration) {
	t.Helper()
	var last []cmapi.IssuerCondition
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		iss, err := cm.CertmanagerV1().ClusterIssuers().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = iss.Status.Conditions
		for _, c := range last {
			if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ClusterIssuer %s not Ready within %s; conditions %+v", name, timeout, last)
}

// ClusterCA creates a CA ClusterIssuer name whose RSA-2048 root (returned)
// lives in Secret "<name>-root" of cert-manager's cluster resource
// namespace, as cert-manager's CA issuer reads it, and waits until the
// clusterissuers controller (StartCluster) has it Ready.
func ClusterCA(t testing.TB, kube kubernetes.Interface, cm cmclient.Interface, clusterResourceNamespace, name string) *certs.Authority {
	t.Helper()
	ctx := context.Background()
	root, err := certs.NewRootAuthority(certs.RSA2048, 87600*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.EncodeKeyPEM(root.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets(clusterResourceNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-root"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certs.EncodeCertsPEM(root.Cert), "tls.key": key},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: name + "-root"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitClusterIssuerReady(t, cm, name, 30*time.Second)
	return root
}
