package injector_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmanager"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// TestCAHangShorterWebhookTimeout: the chart lets the injector's
// timeoutSeconds be 1-30 (fsm.injector.webhookTimeoutSeconds). With a
// mesh CA that never answers (cert-manager without its approver: nobody
// approves the CertificateRequest), a pod create under a 10 s timeout must
// be refused with our error naming the issuer and what it waits for, not
// with the apiserver's "context deadline exceeded" (the injector waited its
// own 15 s, past the apiserver's deadline), and leave no bootstrap Secret
// and no CertificateRequest behind.
func TestCAHangShorterWebhookTimeout(t *testing.T) {
	ctx, e, issuer, servingCA, cm := unapprovedCertManager(t)
	const mesh, ns = "slowca", "slowca-app"
	h := e.writerReplica(t, issuer, mesh, replicaWriter{})
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	// Under the injector's own 15 s, with a margin of 2 s (a quarter of it, at most
	// 2 s) for the answer: a loaded machine running -race needs it.
	const timeout = 10
	reg := meshInjectorConfig(mesh, url, bundle)
	reg.Webhooks[0].TimeoutSeconds = ptr.To(int32(timeout))
	createForTest(ctx, t, e.cl, reg)
	if err := e.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the "+mesh+" mesh's injector to be called", func() (bool, error) {
		return injector.Probe(ctx, e.cl, injector.Mesh{Name: mesh, FSMNamespace: fsmNamespace}, ns) == nil, nil // a dry run: no certificate
	})

	start := time.Now()
	err := e.cl.Create(ctx, pod("hangs", ns))
	took := time.Since(start)
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("pod admitted without a certificate")
	}
	for _, want := range []string{`Issuer "fsm-ca" (cert-manager.io)`, "nobody approved it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: the user cannot tell which CA hangs", want)
		}
	}
	if took > timeout*time.Second+2*time.Second {
		t.Errorf("the create took %s under a %ds webhook timeout", took, timeout)
	}
	secrets := &corev1.SecretList{}
	if err := e.cl.List(ctx, secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, injector.BootstrapSecretPrefix) {
			t.Errorf("bootstrap Secret %s written for a refused pod", s.Name)
		}
	}
	eventually(t, 30*time.Second, "no CertificateRequest left behind", func() (bool, error) {
		l, err := cm.CertmanagerV1().CertificateRequests(fsmNamespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
}

// TestCAHangSlowCleanUpAnswersInTime: with a mesh CA that never answers and
// an apiserver slow to delete the abandoned CertificateRequest, a pod
// create under a 10 s timeout is still refused with our error naming the
// issuer. The issuer waited for that delete (up to 10 s) after the
// admission's deadline, so the apiserver gave up first and the user saw only
// "context deadline exceeded".
func TestCAHangSlowCleanUpAnswersInTime(t *testing.T) {
	// The delete is held until the pod create has been answered: waited
	// for, it holds the admission past the webhook's timeout.
	release := make(chan struct{})
	var once sync.Once
	releaseDeletes := func() { once.Do(func() { close(release) }) }
	ctx, e, issuer, servingCA, cm := unapprovedCertManagerVia(t, func(rt http.RoundTripper) http.RoundTripper {
		return testenv.HeldRequests{Next: rt, Method: http.MethodDelete, PathPart: "/certificaterequests/", Release: release}
	})
	t.Cleanup(releaseDeletes)
	const mesh, ns = "slowcleanup", "slowcleanup-app"
	h := e.writerReplica(t, issuer, mesh, replicaWriter{})
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	// The handler's budget is 8 s (a margin of 2 s for the answer, as
	// TestCAHangShorterWebhookTimeout): the held delete would end past 10 s.
	const timeout = 10
	reg := meshInjectorConfig(mesh, url, bundle)
	reg.Webhooks[0].TimeoutSeconds = ptr.To(int32(timeout))
	createForTest(ctx, t, e.cl, reg)
	if err := e.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the "+mesh+" mesh's injector to be called", func() (bool, error) {
		return injector.Probe(ctx, e.cl, injector.Mesh{Name: mesh, FSMNamespace: fsmNamespace}, ns) == nil, nil
	})

	start := time.Now()
	err := e.cl.Create(ctx, pod("hangs", ns))
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	releaseDeletes()
	if err == nil {
		t.Fatal("pod admitted without a certificate")
	}
	for _, want := range []string{`Issuer "fsm-ca" (cert-manager.io)`, "nobody approved it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: the apiserver's timeout answered instead of the injector", want)
		}
	}
	eventually(t, 30*time.Second, "no CertificateRequest left behind", func() (bool, error) {
		l, err := cm.CertmanagerV1().CertificateRequests(fsmNamespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
}

// unapprovedCertManager starts an apiserver with cert-manager's CRDs and the
// fsm namespace, and returns a cert-manager mesh CA on it that never
// answers: no cert-manager controller runs, so its CertificateRequests are
// never approved nor signed, as with cert-manager's approver missing.
func unapprovedCertManager(t *testing.T) (context.Context, *e2e, certs.Issuer, *certstest.CA, cmclient.Interface) {
	t.Helper()
	return unapprovedCertManagerVia(t, nil)
}

// unapprovedCertManagerVia is unapprovedCertManager with the issuer's
// requests to the apiserver sent through wrap, when set.
func unapprovedCertManagerVia(t *testing.T, wrap func(http.RoundTripper) http.RoundTripper) (context.Context, *e2e, certs.Issuer, *certstest.CA, cmclient.Interface) {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{cmdev.CRDs(t)}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}}); err != nil {
		t.Fatal(err)
	}
	cm := cmclient.NewForConfigOrDie(env.Config)
	issuerCM := cm
	if wrap != nil {
		cfg := rest.CopyConfig(env.Config)
		cfg.Wrap(wrap)
		issuerCM = cmclient.NewForConfigOrDie(cfg)
	}
	issuer, err := certmanager.New(certmanager.Options{
		IssuerName: certmanager.DefaultIssuerName, IssuerKind: certmanager.DefaultIssuerKind, IssuerGroup: certmanager.DefaultIssuerGroup,
		Namespace: fsmNamespace, Client: issuerCM,
	})
	if err != nil {
		t.Fatal(err)
	}
	servingCA, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, &e2e{cl: env.Client, cfg: env.Config}, issuer, servingCA, cm
}
