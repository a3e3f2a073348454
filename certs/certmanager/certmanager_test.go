package certmanager

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	cmutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/cmdev"
)

func TestOptionsValidate(t *testing.T) {
	ok := Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: "fsm-system", Client: cmclient.New(nil)}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"ok", func(*Options) {}, ""},
		{"cluster issuer", func(o *Options) { o.IssuerKind = "ClusterIssuer" }, ""},
		{"external issuer kind", func(o *Options) { o.IssuerGroup = "awspca.cert-manager.io"; o.IssuerKind = "AWSPCAIssuer" }, ""},
		{"name", func(o *Options) { o.IssuerName = "" }, "IssuerName not specified in cert-manager.io options"},
		{"kind", func(o *Options) { o.IssuerKind = "" }, "IssuerKind not specified in cert-manager.io options"},
		{"group", func(o *Options) { o.IssuerGroup = "" }, "IssuerGroup not specified in cert-manager.io options"},
		{"bad kind", func(o *Options) { o.IssuerKind = "Isuer" }, "IssuerKind in cert-manager.io options must be one of [Issuer, ClusterIssuer] for group cert-manager.io, got Isuer"},
		{"secret without client", func(o *Options) { o.CABundleSecret = fsmnames.CABundleSecretName }, "CABundleSecret is set but no Kubernetes client to read it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			_, err := New(o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || err.Error() != "cert-manager: options: "+tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	cond := func(typ cmapi.CertificateRequestConditionType, st cmmeta.ConditionStatus, reason string) cmapi.CertificateRequestCondition {
		return cmapi.CertificateRequestCondition{Type: typ, Status: st, Reason: reason, Message: "msg"}
	}
	for _, tc := range []struct {
		name     string
		conds    []cmapi.CertificateRequestCondition
		cert     []byte
		wantDone bool
		wantErr  string
	}{
		{"no conditions", nil, nil, false, ""},
		{"approved, pending", []cmapi.CertificateRequestCondition{cond("Approved", "True", "ok"), cond("Ready", "False", "Pending")}, nil, false, ""},
		{"ready", []cmapi.CertificateRequestCondition{cond("Ready", "True", "Issued")}, []byte("x"), true, ""},
		{"ready without certificate yet", []cmapi.CertificateRequestCondition{cond("Ready", "True", "Issued")}, nil, false, ""},
		{"denied", []cmapi.CertificateRequestCondition{cond("Denied", "True", "PolicyDenied")}, nil, false, "was denied: PolicyDenied: msg"},
		{"invalid", []cmapi.CertificateRequestCondition{cond("InvalidRequest", "True", "BadCSR")}, nil, false, "is invalid: BadCSR: msg"},
		{"failed", []cmapi.CertificateRequestCondition{cond("Ready", "False", "Failed")}, nil, false, "failed: Failed: msg"},
		{"ready false denied", []cmapi.CertificateRequestCondition{cond("Ready", "False", "Denied")}, nil, false, "failed: Denied: msg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fsm-x"}}
			cr.Status.Conditions = tc.conds
			cr.Status.Certificate = tc.cert
			done, err := decide(cr)
			if done != tc.wantDone {
				t.Errorf("done = %v, want %v", done, tc.wantDone)
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCertManager runs cert-manager's own issuers, approver and CA issuer
// controllers in this process against one envtest apiserver. The controllers
// only serve namespace `auto`; in `manual` nobody approves, so the test
// decides (denial, timeout).
func TestCertManager(t *testing.T) {
	h := startCMEnv(t, 48*time.Hour, true) // the CA outlives every request: none is cut
	env, cm, auto, manual, ca, caPEM := h.env, h.cm, h.auto, h.manual, h.ca, h.caPEM
	ctx := context.Background()
	newIssuer := func(t *testing.T, ns, issuerName string) *Issuer { return h.issuer(t, ns, issuerName, nil) }

	t.Run("issued", func(t *testing.T) {
		i := newIssuer(t, auto, DefaultIssuerName)
		for _, tc := range []struct {
			name  string
			alg   certs.KeyAlgorithm
			usage certs.Usage
			valid time.Duration
		}{
			{"fsm-injector.fsm-system.svc", certs.RSA2048, certs.UsageServer, 90 * time.Minute},
			{"p1.sidecar.sa.bookstore.cluster.local", certs.ECDSAP256, certs.UsageBoth, 24 * time.Hour},
		} {
			ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
			c, err := i.Issue(ictx, certs.Request{CommonName: tc.name, DNSNames: []string{tc.name}, Validity: tc.valid, Usage: tc.usage, KeyAlgorithm: tc.alg})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, tc.name, tc.usage, time.Now().Add(tc.valid-time.Minute)); err != nil {
				t.Fatal(err)
			}
			leaf, _ := certs.ParseCertsPEM(c.CertPEM)
			if err := leaf[0].CheckSignatureFrom(ca.Cert); err != nil {
				t.Fatal(err)
			}
			if got := leaf[0].NotAfter.Sub(leaf[0].NotBefore); got != tc.valid {
				t.Errorf("lifetime = %s, want exactly %s", got, tc.valid)
			}
			if alg, _ := certs.AlgorithmOf(leaf[0].PublicKey); alg != tc.alg {
				t.Errorf("key = %s, want %s", alg, tc.alg)
			}
			if leaf[0].KeyUsage&x509.KeyUsageDigitalSignature == 0 {
				t.Errorf("KeyUsage = %v, want digital signature", leaf[0].KeyUsage)
			}
			if !c.NotAfter.Equal(leaf[0].NotAfter) {
				t.Errorf("NotAfter = %s, leaf %s", c.NotAfter, leaf[0].NotAfter)
			}
		}
		b, err := i.CABundle(ctx)
		if err != nil || string(b) != string(caPEM) {
			t.Fatalf("CABundle = %q, %v", b, err)
		}
		assertNoRequests(t, cm, auto)
	})

	// The operator switched the Issuer to a root before adding it to ca.crt
	// (certs/rootrotation has it the other way round): CABundle trusts
	// only ca.crt, so the certificate is refused, not handed out.
	t.Run("signer outside ca.crt", func(t *testing.T) {
		other, err := certs.NewRootAuthority(certs.ECDSAP256, 24*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		otherKey, _ := certs.EncodeKeyPEM(other.Key)
		if _, err := env.Clientset.CoreV1().Secrets(auto).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "next-root"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": certs.EncodeCertsPEM(other.Cert), "tls.key": otherKey},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cm.CertmanagerV1().Issuers(auto).Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "next-root"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "next-root"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cmdev.WaitIssuerReady(t, cm, auto, "next-root", 30*time.Second)
		i := newIssuer(t, auto, "next-root")
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = i.Issue(ictx, certs.Request{CommonName: "fsm-injector.fsm-system.svc", DNSNames: []string{"fsm-injector.fsm-system.svc"}, Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
		want := "which no root in ca.crt of CA Secret " + auto + "/" + fsmnames.CABundleSecretName + " verifies"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to say %q", err, want)
		}
		if b, err := i.CABundle(ctx); err != nil || string(b) != string(caPEM) {
			t.Fatalf("CABundle = %q, %v; want ca.crt only", b, err)
		}
		assertNoRequests(t, cm, auto)
	})

	t.Run("denied", func(t *testing.T) {
		i := newIssuer(t, manual, DefaultIssuerName)
		w, err := cm.CertmanagerV1().CertificateRequests(manual).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		denied := make(chan error, 1)
		go func() {
			for ev := range w.ResultChan() {
				cr, ok := ev.Object.(*cmapi.CertificateRequest)
				if ev.Type != watch.Added || !ok {
					continue
				}
				cmutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionDenied, cmmeta.ConditionTrue, "PolicyDenied", "fsm-injector may not ask for this name")
				_, err := cm.CertmanagerV1().CertificateRequests(manual).UpdateStatus(ctx, cr, metav1.UpdateOptions{})
				denied <- err
				return
			}
		}()
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = i.Issue(ictx, certs.Request{CommonName: "evil.svc", DNSNames: []string{"evil.svc"}, Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
		if derr := <-denied; derr != nil {
			t.Fatalf("denying: %v", derr)
		}
		// The issuer is named: cert-manager's denial does not say which.
		if err == nil || !strings.Contains(err.Error(), "was denied: PolicyDenied: fsm-injector may not ask for this name") || !strings.HasPrefix(err.Error(), `cert-manager: issue evil.svc: Issuer "fsm-ca" (cert-manager.io): `) {
			t.Fatalf("err = %v", err)
		}
		assertNoRequests(t, cm, manual)
	})

	t.Run("issuer missing times out with the Pending reason", func(t *testing.T) {
		i := newIssuer(t, auto, "no-such-issuer")
		// Long enough for the in-process cert-manager, on a starved
		// machine, to have set the Pending reason the error must carry.
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := i.Issue(ictx, certs.Request{CommonName: "x.svc", Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
		if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "reason Pending") || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("err = %v", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err does not wrap context.DeadlineExceeded: %v", err)
		}
		assertNoRequests(t, cm, auto)
	})

	// fsm-ca-bundle is the user's (FSM's docs create it by hand): a broken
	// ca.crt is named with its Secret and key, and costs no request.
	t.Run("malformed ca.crt", func(t *testing.T) {
		good := string(caPEM)
		expired, err := certs.NewRootAuthority(certs.ECDSAP256, time.Hour, time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, ca, want string }{
			{"every root expired", string(certs.EncodeCertsPEM(expired.Cert)), "every certificate has expired"},
			{"not PEM", "this is not a certificate\n", "no PEM certificate found"},
			{"broken certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "malformed certificate"},
			{"good root then broken certificate", good + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 2"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ns := namespace(t, env.Clientset, "broken-")
				if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: fsmnames.CABundleSecretName},
					Data:       map[string][]byte{"ca.crt": []byte(tc.ca)},
				}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				i := newIssuer(t, ns, DefaultIssuerName)
				prefix := "CA Secret " + ns + "/" + fsmnames.CABundleSecretName + ", key ca.crt: "
				_, err := i.CABundle(ctx)
				if err == nil || !strings.Contains(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("CABundle: err = %v, want it to name %q and say %q", err, prefix, tc.want)
				}
				_, err = i.Issue(ctx, certs.Request{CommonName: "x.svc", Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
				if err == nil || !strings.Contains(err.Error(), prefix) {
					t.Errorf("Issue: err = %v, want it to name %q", err, prefix)
				}
				assertNoRequests(t, cm, ns)
			})
		}
	})

	t.Run("timeout without approval", func(t *testing.T) {
		i := newIssuer(t, manual, DefaultIssuerName)
		// The deadline must fall once the request exists (a CA Secret read
		// and a create, seconds on a loaded apiserver): before, there is
		// no request nobody approved, only a create cut short.
		const deadline = 10 * time.Second
		ictx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		start := time.Now()
		_, err := i.Issue(ictx, certs.Request{CommonName: "y.svc", Validity: time.Hour, Usage: certs.UsageClient, KeyAlgorithm: certs.ECDSAP256})
		if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "nobody approved it") {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) > deadline+15*time.Second {
			t.Errorf("Issue ignored its ctx deadline: returned after %s", time.Since(start))
		}
		assertNoRequests(t, cm, manual)
	})
}

// assertNoRequests: no CertificateRequest is left in ns, allowing for the
// clean-up of one whose caller's deadline ended first, which runs on in
// the background (cleanUp).
func assertNoRequests(t *testing.T, cm cmclient.Interface, ns string) {
	t.Helper()
	waitNoRequests(t, cm, ns, deleteTimeout)
}

func namespace(t *testing.T, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}
