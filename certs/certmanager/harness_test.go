package certmanager

import (
	"context"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// cmEnv is the TestCertManager set-up for the tests below: a real
// apiserver, cert-manager's issuers/approver/CA-issuer controllers serving
// namespace auto (when controllers is true), a CA Issuer fsm-ca there, and
// the same CA as fsm-ca-bundle in auto and manual (nobody serves manual).
type cmEnv struct {
	env          *testenv.Env
	cm           cmclient.Interface
	auto, manual string
	ca           *certs.Authority
	caPEM        []byte
}

func startCMEnv(t *testing.T, caLife time.Duration, controllers bool) *cmEnv {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{cmdev.CRDs(t)}})
	h := &cmEnv{env: env, cm: cmclient.NewForConfigOrDie(env.Config)}
	ctx := context.Background()
	h.auto = namespace(t, env.Clientset, "auto-")
	h.manual = namespace(t, env.Clientset, "manual-")
	if controllers {
		cmdev.Start(t, env.KubeConfig, h.auto)
	}
	ca, err := certs.NewRootAuthority(certs.RSA2048, caLife, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	caKey, _ := certs.EncodeKeyPEM(ca.Key)
	h.caPEM = certs.EncodeCertsPEM(ca.Cert)
	for _, ns := range []string{h.auto, h.manual} {
		if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fsmnames.CABundleSecretName},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": h.caPEM, "tls.key": caKey, "ca.crt": h.caPEM},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if controllers {
		if _, err := h.cm.CertmanagerV1().Issuers(h.auto).Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: DefaultIssuerName},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: fsmnames.CABundleSecretName}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cmdev.WaitIssuerReady(t, h.cm, h.auto, DefaultIssuerName, 30*time.Second)
	}
	return h
}

func (h *cmEnv) issuer(t *testing.T, ns, issuerName string, cm cmclient.Interface) *Issuer {
	t.Helper()
	if cm == nil {
		cm = h.cm
	}
	i, err := New(Options{IssuerName: issuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup,
		Namespace: ns, Client: cm, CABundleSecret: fsmnames.CABundleSecretName, Secrets: h.env.Clientset})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// startClusterEnv starts a real apiserver with cert-manager's ClusterIssuer
// controllers (clusterissuers, approver, CA issuer) serving cert-manager's
// namespace cmNS, where a ClusterIssuer's CA Secret lives, and an fsm
// namespace of its own.
func startClusterEnv(t *testing.T) (env *testenv.Env, cm cmclient.Interface, cmNS, fsmNS string) {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	env = testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{cmdev.CRDs(t)}})
	cm = cmclient.NewForConfigOrDie(env.Config)
	cmNS = namespace(t, env.Clientset, "cert-manager-")
	fsmNS = namespace(t, env.Clientset, "fsm-")
	cmdev.StartCluster(t, env.KubeConfig, cmNS)
	return env, cm, cmNS, fsmNS
}
