package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestServeOnClusterIssuerWithoutCABundleSecret: FSM v1.5.1 with
// cert-manager never reads fsm-ca-bundle (its provider takes the CA from
// each CertificateRequest's status.ca; its controller learns it at start
// from an "init-cert"), so an FSM user on a ClusterIssuer, whose CA Secret
// lives in cert-manager's namespace, may have none. `serve` with FSM's
// cert-manager flags and the default --ca-bundle-secret-name must still
// become ready there: its serving cert and its registration's caBundle come
// from the ClusterIssuer, signed by cert-manager's own controllers.
//
// Its serving keys are what FSM's provider asked cert-manager for, so an
// issuer's policy written for FSM's requests signs them: RSA of the
// MeshConfig's certKeyBitSize, read at start (FSM's default 2048 with no
// MeshConfig yet).
func TestServeOnClusterIssuerWithoutCABundleSecret(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	for _, tc := range []struct {
		name           string
		certKeyBitSize int64 // the MeshConfig's; 0: no MeshConfig
		wantBits       int
	}{
		{"no MeshConfig", 0, 2048},
		{"MeshConfig certKeyBitSize 3072", 3072, 3072},
	} {
		t.Run(tc.name, func(t *testing.T) { serveOnClusterIssuer(t, tc.certKeyBitSize, tc.wantBits) })
	}
}

func serveOnClusterIssuer(t *testing.T, certKeyBitSize int64, wantBits int) {
	const ns = "fsm-system"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs(), cmdev.CRDs(t)}})
	for _, n := range []string{ns, "cert-manager"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if certKeyBitSize != 0 {
		mc, err := validator.BaseMeshConfig(ns, fsmnames.MeshConfigName)
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(mc.Object, certKeyBitSize, "spec", "certificate", "certKeyBitSize"); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, mc); err != nil {
			t.Fatal(err)
		}
	}
	cmdev.StartCluster(t, env.KubeConfig, "cert-manager")
	cm := cmclient.NewForConfigOrDie(env.Config)
	root := cmdev.ClusterCA(t, env.Clientset, cm, "cert-manager", "mesh-ca")
	rootPEM := certs.EncodeCertsPEM(root.Cert)

	o, done := serveValidator(ctx, t, env.Config, ns, func(o *options) {
		o.certificateManager = "cert-manager"
		o.certManagerIssuerName, o.certManagerIssuerKind = "mesh-ca", "ClusterIssuer"
		o.keyPoolSize = 0
	})
	if o.caBundleSecretName != fsmnames.CABundleSecretName {
		t.Fatalf("--ca-bundle-secret-name %q, want the default %q", o.caBundleSecretName, fsmnames.CABundleSecretName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: fmt.Sprintf("%s.%s.svc", fsmnames.ValidatorService, ns)}}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath)
	waitAnswers(t, hc, url, done, "the validator, on a cert from the ClusterIssuer's root,")
	var bundle []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		list, err := env.Clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list.Items {
			for _, w := range c.Webhooks {
				if w.ClientConfig.URL != nil && strings.Contains(*w.ClientConfig.URL, fmt.Sprintf(":%d/", o.validatorPort)) {
					bundle = w.ClientConfig.CABundle
				}
			}
		}
		if bytes.Equal(bundle, rootPEM) {
			break
		}
	}
	if !bytes.Equal(bundle, rootPEM) {
		t.Errorf("the validator registration's caBundle:\n%s\nis not the ClusterIssuer's root", bundle)
	}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, fsmnames.CABundleSecretName, metav1.GetOptions{}); err == nil {
		t.Errorf("%s/%s exists: serve must not write it with cert-manager", ns, fsmnames.CABundleSecretName)
	}
	sec, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, fsmnames.ValidatorCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.ParseKeyPEM(sec.Data[servingcert.KeyKey])
	if err != nil {
		t.Fatalf("%s %s: %v", fsmnames.ValidatorCertSecret, servingcert.KeyKey, err)
	}
	bits := 0 // not RSA
	if k, ok := key.(*rsa.PrivateKey); ok {
		bits = k.N.BitLen()
	}
	if bits != wantBits {
		t.Errorf("serving key of %s is %T (%d bits), want RSA %d as FSM asked cert-manager", fsmnames.ValidatorCertSecret, key, bits, wantBits)
	}
}
