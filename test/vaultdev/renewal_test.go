package vaultdev_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/probehook"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

const clampLog = "Vault issues certificates valid for less than requested"

// TestServingCertRenewalThroughVault serves a webhook on certificates from a
// real Vault whose role grants less than the decade asked for: FSM's
// documented set-up (max_ttl 24h) compressed to max_ttl 45s so that real
// renewals happen within the test. Every certificate is accepted as Vault
// grants it, renewed at 2/3 of that granted lifetime less the jitter,
// hot-reloaded by the listener, and the caBundle keeps verifying it: the
// apiserver reaches the webhook throughout. The shortening is counted on
// every issuance and logged once.
func TestServingCertRenewalThroughVault(t *testing.T) {
	const (
		role = "flomesh"
		// A renewal is due 2/3 of the way, less up to a tenth of the
		// lifetime: it has 14-20 s to be issued, written, loaded and seen
		// before the old cert expires. 30 s certs left 9-13 s, and 20 s
		// certs (webhooks' TestServing/Expiry) were once renewed over 8 s
		// late on a loaded CI machine.
		maxTTL   = 45 * time.Second
		renewals = 2
	)
	// controller-runtime's webhook server logs through its global logger.
	ctrllog.SetLogger(logr.Discard())
	ctx := context.Background()
	vs := vaultdev.New(t)
	// NotBefore backdated 1s, not Vault's default 30s, so the lifetime is
	// max_ttl and the renewal instant is easy to read.
	if err := vs.SetupPKI(ctx, "pki", vaultdev.Role{Name: role, MaxTTL: maxTTL, NotBefore: time.Second}); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{})
	logs := &vaultdev.LogLines{}
	zero := 0
	issuer, err := vault.New(ctx, vault.Options{
		Host: vs.Host, Port: vs.Port, Protocol: "http", Role: role, Token: vs.Token, MaxRetries: &zero, Logger: logs.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	clampedBefore := metricValue(t, "fsm_webhooks_vault_ttl_clamped_total", role)

	const ns, workNS, config = "vault-e2e", "vault-e2e-work", "deny-vault-e2e"
	for _, n := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		{ObjectMeta: metav1.ObjectMeta{Name: workNS, Labels: map[string]string{"webhook-test": "vault"}}},
	} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	port := freeport.Must(t)
	srv, err := webhooks.New(webhooks.Options{
		Config: env.Config, Namespace: ns, MeshName: "fsm", WebhookURLHost: "127.0.0.1", BindHost: "127.0.0.1",
		Issuer: issuer, ResyncInterval: time.Second, SettleDelay: time.Second,
		// CertValidity unset: the serving cert is asked for 87600h.
	}, []webhooks.Webhook{{
		Name: "deny", Port: port, ServiceName: fsmnames.ValidatorService, SecretName: fsmnames.ValidatorCertSecret,
		Handlers:     map[string]http.Handler{fsmnames.ValidatorPath: &admission.Webhook{Handler: probehook.Handler()}},
		Registration: registration(config),
	}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("webhook server: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("webhook server did not stop within 30s")
		}
	})
	waitFor(t, 2*time.Minute, "webhook server ready", func() error { return srv.Ready(ctx) })

	served := func() (*x509.Certificate, error) { return servedCert(ctx, env.Clientset, config, port) }
	cur, err := served()
	if err != nil {
		t.Fatal(err)
	}
	if life := cur.NotAfter.Sub(cur.NotBefore); life > maxTTL+2*time.Second {
		t.Fatalf("served cert lives %s, want what Vault granted (max_ttl %s + 1s backdate)", life, maxTTL)
	}
	// Ready is the server's view; the apiserver admits through its own
	// cached copy of the configuration, which can lag it.
	waitFor(t, time.Minute, "the apiserver admitting through the webhook", func() error { return probehook.Admit(ctx, env.Clientset, workNS) })
	// A ConfigMap the webhook must deny every 250 ms, all through the renewals.
	admissions := testenv.StartLoop(250*time.Millisecond, func(ctx context.Context) error { return probehook.Admit(ctx, env.Clientset, workNS) })
	for n := 1; n <= renewals; n++ {
		earliest, latest := certs.Renewal{}.Window(cur)
		var next *x509.Certificate
		// Bounded by the old cert's expiry: renewal must come before it.
		waitFor(t, time.Until(cur.NotAfter)+5*time.Second, fmt.Sprintf("renewal %d of the served cert (due %s-%s, expires %s)",
			n, earliest.Format(time.TimeOnly), latest.Format(time.TimeOnly), cur.NotAfter.Format(time.TimeOnly)), func() error {
			c, err := served()
			if err != nil {
				return err
			}
			if c.SerialNumber.Cmp(cur.SerialNumber) == 0 {
				return errors.New("still serving serial " + cur.SerialNumber.Text(16))
			}
			next = c
			return nil
		})
		seen := time.Now()
		t.Logf("renewal %d: new cert served %s after the old one's NotBefore (due %s-%s, expiry at %s)", n,
			seen.Sub(cur.NotBefore).Round(100*time.Millisecond), earliest.Sub(cur.NotBefore), latest.Sub(cur.NotBefore), cur.NotAfter.Sub(cur.NotBefore))
		if !seen.Before(cur.NotAfter) {
			t.Errorf("renewal %d: new cert served at %s, after the old one expired at %s", n, seen, cur.NotAfter)
		}
		// x509 times are whole seconds and Vault backdates NotBefore by 1s.
		if issued := next.NotBefore.Add(time.Second); issued.Before(earliest.Add(-time.Second)) {
			t.Errorf("renewal %d: new cert issued at %s, before 2/3 of the old one's lifetime less the largest jitter (%s)", n, issued, earliest)
		}
		if life := next.NotAfter.Sub(next.NotBefore); life > maxTTL+2*time.Second {
			t.Errorf("renewal %d: new cert lives %s, want what Vault granted", n, life)
		}
		cur = next
	}
	admissions.Finish(t)

	if got := metricValue(t, "fsm_webhooks_vault_ttl_clamped_total", role) - clampedBefore; got < 1+renewals {
		t.Errorf("fsm_webhooks_vault_ttl_clamped_total{role=%q} grew by %v over %d issuances", role, got, 1+renewals)
	}
	if got := metricValue(t, "fsm_webhooks_vault_ttl_granted_seconds", role); got < (maxTTL-2*time.Second).Seconds() || got > (maxTTL+time.Second).Seconds() {
		t.Errorf("fsm_webhooks_vault_ttl_granted_seconds{role=%q} = %v, want about %v", role, got, maxTTL.Seconds())
	}
	var warned []string
	for _, l := range logs.Lines() {
		if strings.Contains(l, clampLog) {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 {
		t.Errorf("clamp logged %d times over %d issuances, want once: %q", len(warned), 1+renewals, warned)
	}
}

// servedCert is the certificate the listener serves now, verified as the
// apiserver verifies it: against the caBundle of the registration.
func servedCert(ctx context.Context, cs kubernetes.Interface, config string, port int) (*x509.Certificate, error) {
	reg, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, config, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if len(reg.Webhooks) == 0 || !pool.AppendCertsFromPEM(reg.Webhooks[0].ClientConfig.CABundle) {
		return nil, fmt.Errorf("%s has no caBundle", config)
	}
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("TLS handshake verified with the caBundle of %s: %w", config, err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// metricValue reads a counter or gauge with label role from the registry
// the metrics endpoint serves.
func metricValue(t *testing.T, name, role string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" && l.GetValue() == role {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func registration(name string) webhooks.Registration {
	none := admv1.SideEffectClassNone
	return webhooks.Registration{
		Kind: webhooks.ValidatingConfiguration,
		Name: name,
		Path: fsmnames.ValidatorPath,
		Validating: &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Webhooks: []admv1.ValidatingWebhook{{
				Name: "deny.vault.test.flomesh.io",
				Rules: []admv1.RuleWithOperations{{
					Operations: []admv1.OperationType{admv1.Create},
					Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"webhook-test": "vault"}},
				FailurePolicy:           ptr.To(admv1.Fail),
				SideEffects:             &none,
				TimeoutSeconds:          ptr.To[int32](10),
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, 100*time.Millisecond, what, cond)
}
