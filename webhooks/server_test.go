package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestServing runs every envtest scenario against one apiserver; each
// subtest isolates itself with its own namespaces, configuration and CA.
func TestServing(t *testing.T) {
	ctrllog.SetLogger(testLog(nil, "controller-runtime"))
	env = testenv.Start(t, testenv.Options{})
	t.Run("RestartReusesCert", testRestartReuse)
	t.Run("ReadinessGated", testReadinessGated)
	t.Run("ReadinessPerWebhook", testReadinessPerWebhook)
	t.Run("ReadinessSurvivesSecretMetadataEdit", testReadinessSurvivesMetadataEdit)
	t.Run("WholeStateSurvivesSecretMetadataEdit", testWholeStateSurvivesMetadataEdit)
	t.Run("ReportOnlyProbe", testReportOnlyProbe)
	t.Run("CachesGateReadiness", testCachesGateReadiness)
	t.Run("DriftRepair", testDrift)
	t.Run("Deletion", testDeletion)
	t.Run("HA", testHA)
	t.Run("Expiry", testExpiry)
	t.Run("NearCAExpiry", testNearCAExpiry)
	t.Run("OwnWriteOutrunsStalledWatch", testOwnWriteOutrunsStalledWatch)
	t.Run("EditedCACrtRepaired", testEditedCACrtRepaired)
	t.Run("RootRotation", testRotation)
	t.Run("RootRotationTwoReplicas", testRotationTwoReplicas)
	t.Run("BundleChangeNotified", testBundleChangeNotified)
	t.Run("TwoEntries", testTwoEntries)
	t.Run("EmptyConfiguration", testEmptyConfiguration)
	t.Run("CRDConversion", testConversion)
	t.Run("ConversionWaitsForRoute", testConversionWaitsForRoute)
	t.Run("ConversionRouteFallback", testConversionRouteFallback)
	t.Run("TwoMeshesOneConverter", testTwoMeshesOneConverter)
	t.Run("RotationBesideAnotherMeshsConverter", testRotationBesideAnotherMeshsConverter)
	t.Run("TrustCheckCRDWithoutConversionWebhook", testTrustCheckCRDWithoutConversionWebhook)
	t.Run("AutoRotation", testAutoRotation)
	t.Run("RenewServingCerts", testRenewServingCerts)
	t.Run("MixedTrustRollout", testMixedTrustRollout)
	t.Run("MixedTrustReplacedRootKept", testMixedTrustReplacedRootKept)
}

func testRestartReuse(t *testing.T) {
	tc := newCase(t, "restart", true)
	port := freePort(t)
	s1 := start(t, tc.options(), tc.webhook(port))
	s1.waitReady(t)
	tc.waitAdmitting(t)
	sec1, cfg1 := tc.secret(t), tc.config(t)
	s1.stop(t)

	s2 := start(t, tc.options(), tc.webhook(port))
	s2.waitReady(t)
	if err := tc.admitOnce(context.Background()); err != nil {
		t.Fatalf("admission after restart: %v", err)
	}
	sec2, cfg2 := tc.secret(t), tc.config(t)
	if sec2.ResourceVersion != sec1.ResourceVersion {
		t.Errorf("restart rewrote the Secret: resourceVersion %s -> %s", sec1.ResourceVersion, sec2.ResourceVersion)
	}
	if cfg2.ResourceVersion != cfg1.ResourceVersion {
		t.Errorf("restart rewrote the configuration: resourceVersion %s -> %s", cfg1.ResourceVersion, cfg2.ResourceVersion)
	}
	if n := tc.ca.Issued(); n != 1 {
		t.Errorf("issued %d certs across a restart, want 1", n)
	}
	// The caBundle is the CA, never the leaf.
	if !bytes.Equal(cfg2.Webhooks[0].ClientConfig.CABundle, mustBundle(t, tc)) {
		t.Error("caBundle is not the CA bundle")
	}
}

// awaitNewRootOnly checks that a finished root rotation moved tc's CA off
// oldRoot and waits for the configuration's caBundle to hold the new root
// only; it returns the new root.
func awaitNewRootOnly(t *testing.T, tc *testCase, oldRoot *x509.Certificate) *x509.Certificate {
	t.Helper()
	newRoot := tc.ca.Active()
	if newRoot.Equal(oldRoot) {
		t.Fatal("root did not change")
	}
	waitFor(t, settleWithin, "caBundle = new root only", func() error {
		if !bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, mustBundle(t, tc)) {
			return errTest("old root still in the caBundle")
		}
		return nil
	})
	return newRoot
}

func mustBundle(t *testing.T, tc *testCase) []byte {
	t.Helper()
	b, err := tc.ca.CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, err := servingcert.MergeBundles(time.Now(), b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testReadinessGated(t *testing.T) {
	// Service mode: the configuration belongs to the chart; the server
	// only patches its caBundle. The pod is ready as soon as it serves
	// (/readyz); the webhook's whole state (/readyz/<name>) is not ready
	// before the caBundle is patched and the probe passes.
	tc := newCase(t, "ready", false)
	probeOK := make(chan struct{})
	w := tc.webhook(freePort(t))
	w.Probe = func(context.Context) error {
		select {
		case <-probeOK:
			return nil
		default:
			return errTest("probe not passing yet")
		}
	}
	opts := tc.options()
	healthPort := freePort(t)
	opts.HealthProbeBindAddress = "127.0.0.1:" + strconv.Itoa(healthPort)
	s := start(t, opts, w)
	readyz := func() (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + "/readyz/" + w.Name + "?verbose")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The cert gets written and loaded, but there is no configuration.
	waitFor(t, settleWithin, "serving cert loaded", func() error {
		if s.hooks[0].src.Current() == nil {
			return errTest("not loaded")
		}
		return nil
	})
	waitFor(t, settleWithin, "/readyz (the pod serves) without a configuration", func() error {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errTest(resp.Status)
		}
		return nil
	})
	if code, body := readyz(); code != http.StatusInternalServerError || !strings.Contains(body, "not found") {
		t.Fatalf("/readyz/%s without a configuration: %d %s", w.Name, code, body)
	}
	if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Ready without a configuration: %v", err)
	}
	if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The chart installs the configuration with a stale caBundle.
	other := newCA(t)
	cfg := NewValidating(tc.registration().Validating, Endpoint{Namespace: tc.ns, ServiceName: fsmnames.ValidatorService, Port: 9093}, fsmnames.ValidatorPath, otherBundle(t, other))
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(context.Background(), cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "caBundle patched", func() error {
		if !bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, mustBundle(t, tc)) {
			return errTest("caBundle not patched")
		}
		return nil
	})
	// caBundle matches, the probe (run in the background) still fails.
	waitFor(t, settleWithin, "the failing probe reported", func() error {
		if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "probe not passing yet") {
			return fmt.Errorf("Ready = %v", err)
		}
		return nil
	})
	if code, body := readyz(); code != http.StatusInternalServerError || !strings.Contains(body, "probe not passing yet") {
		t.Fatalf("/readyz/%s with a failing probe: %d %s", w.Name, code, body)
	}
	// Only the caBundle was touched: the chart's Service reference stays.
	if svc := tc.config(t).Webhooks[0].ClientConfig.Service; svc == nil || svc.Port == nil || *svc.Port != 9093 {
		t.Errorf("client config changed: %+v", tc.config(t).Webhooks[0].ClientConfig)
	}
	close(probeOK)
	waitFor(t, settleWithin, "/readyz/<name> ok", func() error {
		if code, body := readyz(); code != http.StatusOK {
			return errTest(body)
		}
		return nil
	})
}

type errTest string

func (e errTest) Error() string { return string(e) }

func newCA(t *testing.T) interface {
	CABundle(context.Context) ([]byte, error)
} {
	t.Helper()
	ca, err := certstest.New(context.Background(), certstest.Options{RootValidity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func otherBundle(t *testing.T, ca interface {
	CABundle(context.Context) ([]byte, error)
}) []byte {
	t.Helper()
	b, err := ca.CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testDrift(t *testing.T) {
	tc := newCase(t, "drift", true)
	opts := tc.options()
	metricsPort := freePort(t)
	opts.MetricsBindAddress = "127.0.0.1:" + strconv.Itoa(metricsPort)
	s := start(t, opts, tc.webhook(freePort(t)))
	s.waitReady(t)
	// The counter is the process's: another round of this test (-count)
	// counted before.
	const repairs = `fsm_webhooks_cabundle_repairs_total{kind="ValidatingWebhookConfiguration",webhook="deny-drift"}`
	body := scrape(t, metricsPort)
	// Exported from the start, at 0: increase() misses a series' first value.
	if !strings.Contains(body, repairs+" ") {
		t.Fatalf("%s not exported before any repair", repairs)
	}
	repairs0 := seriesValue(body, repairs)
	good := mustBundle(t, tc)
	checkTLSPolicy(t, s.hooks[0])
	for _, bad := range [][]byte{[]byte("garbage"), nil, otherBundle(t, newCA(t))} {
		cfg := tc.config(t)
		cfg.Webhooks[0].ClientConfig.CABundle = bad
		w, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(context.Background(),
			metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", tc.configName()).String(), ResourceVersion: cfg.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(context.Background(), cfg, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		broken := time.Now()
		repaired := false
		timeout := time.After(settleWithin) // bounds a hang only: the repair is watch-driven
		for !repaired {
			select {
			case ev := <-w.ResultChan():
				if ev.Type == watch.Modified && bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, good) {
					repaired = true
				}
			case <-timeout:
				t.Fatalf("caBundle %q not repaired within %s", bad, settleWithin)
			}
		}
		w.Stop()
		t.Logf("caBundle %.10q repaired in %s", bad, time.Since(broken))
		waitFor(t, settleWithin, "admission after repair", func() error { return tc.admitOnce(context.Background()) })
	}
	// An Event says what was fixed.
	waitFor(t, settleWithin, "repair event", func() error {
		evs, err := tc.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", tc.configName()).String(),
		})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "CABundleRepaired" && strings.Contains(e.Message, "unparsable") {
				return nil
			}
		}
		return errTest("no CABundleRepaired event mentioning the unparsable caBundle")
	})
	// Metrics: repairs counted, expiry exported.
	body = scrape(t, metricsPort)
	if got := seriesValue(body, repairs) - repairs0; got != 3 {
		t.Errorf("%s went up by %v, want 3", repairs, got)
	}
	for _, want := range []string{
		`fsm_webhooks_serving_cert_expiry_seconds{secret="validating-webhook-cert-secret",webhook="deny-drift"}`,
		`fsm_webhooks_requests_total{result="denied",webhook="deny-drift"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The lifetime, NotBefore to NotAfter, exceeds the time left by how
	// long ago the cert became valid: minutes, as it was just issued
	// (backdated).
	series := `{secret="validating-webhook-cert-secret",webhook="deny-drift"}`
	lifetime, left := seriesValue(body, "fsm_webhooks_serving_cert_lifetime_seconds"+series), seriesValue(body, "fsm_webhooks_serving_cert_expiry_seconds"+series)
	if age := time.Duration((lifetime - left) * float64(time.Second)); age <= 0 || age > 15*time.Minute {
		t.Errorf("fsm_webhooks_serving_cert_lifetime_seconds %v, expiry_seconds %v: the cert's age by them %s, want a few minutes", lifetime, left, age)
	}
}

// scrape is the text /metrics serves on port.
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// seriesValue is series' value in a /metrics text, 0 when absent.
func seriesValue(body, series string) float64 {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return 0
}

func testDeletion(t *testing.T) {
	tc := newCase(t, "deletion", true)
	s := start(t, tc.options(), tc.webhook(freePort(t)))
	s.waitReady(t)
	tc.waitAdmitting(t)
	ctx := context.Background()

	// The serving Secret: recreated; the listener keeps serving the
	// in-memory cert meanwhile, so admission never fails.
	l := tc.startLoop()
	old := tc.secret(t)
	if err := tc.cs.CoreV1().Secrets(tc.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "Secret recreated", func() error {
		s, err := tc.cs.CoreV1().Secrets(tc.ns).Get(ctx, old.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.UID == old.UID {
			return errTest("same Secret")
		}
		return nil
	})
	time.Sleep(time.Second)
	l.Finish(t)

	// The configuration: recreated (URL mode registers itself).
	cfg := tc.config(t)
	if err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver admits through its cached copy of the deleted
	// configuration for a while, so admitting alone proves nothing: the
	// configuration must exist again, as a new object, and admit.
	waitFor(t, settleWithin, "configuration recreated and admitting", func() error {
		c, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, cfg.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c.UID == cfg.UID {
			return errTest("configuration not yet recreated")
		}
		return nil
	})
	// The apiserver's cache may still go through a moment without any
	// configuration (the deletion seen, the recreation not yet).
	tc.waitAdmitting(t)

	// The mesh CA replaced outright (fsm-ca-bundle deleted, the provider
	// made a new root): caBundle gets old+new, the cert is re-issued from
	// the new root, then the old root leaves the caBundle. No failed
	// admission on the way.
	oldRoot := tc.ca.Active()
	l = tc.startLoop()
	time.Sleep(300 * time.Millisecond)
	if err := tc.ca.Replace(); err != nil {
		t.Fatal(err)
	}
	newRoot := tc.ca.Active()
	// The old root stays for replacedRootKeep after the server replaced
	// its cert of it.
	waitFor(t, settleWithin+replacedRootKeep*tc.options().SettleDelay, "serving cert on the new root and caBundle = new root only", func() error {
		if err := certs.ChainsTo(tc.secret(t).Data[servingcert.KeyCert], newRoot, time.Now()); err != nil {
			return err
		}
		if !bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, mustBundle(t, tc)) {
			return errTest("caBundle still holds the old root")
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	l.Finish(t)
	if bytes.Contains(tc.config(t).Webhooks[0].ClientConfig.CABundle, certs.EncodeCertsPEM(oldRoot)) {
		t.Error("old root still trusted")
	}
	s.waitReady(t)
}

func testHA(t *testing.T) {
	tc := newCase(t, "ha", true)
	ctx := context.Background()
	secWatch, err := tc.cs.CoreV1().Secrets(tc.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer secWatch.Stop()
	cfgWatch, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx,
		metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", tc.configName()).String()})
	if err != nil {
		t.Fatal(err)
	}
	defer cfgWatch.Stop()

	var servers []*running
	for range 3 {
		servers = append(servers, start(t, tc.options(), tc.webhook(freePort(t))))
	}
	for _, s := range servers {
		s.waitReady(t)
	}
	// Let any late writer show itself.
	time.Sleep(3 * time.Second)
	if err := tc.admitOnce(ctx); err != nil {
		t.Fatal(err)
	}
	count := func(w watch.Interface) map[watch.EventType]int {
		out := map[watch.EventType]int{}
		for {
			select {
			case ev := <-w.ResultChan():
				out[ev.Type]++
			case <-time.After(200 * time.Millisecond):
				return out
			}
		}
	}
	if got := count(secWatch); got[watch.Added] != 1 || got[watch.Modified] != 0 {
		t.Errorf("serving Secret events %v, want exactly one ADDED", got)
	}
	if got := count(cfgWatch); got[watch.Added] != 1 || got[watch.Modified] != 0 {
		t.Errorf("configuration events %v, want exactly one ADDED (no caBundle flapping)", got)
	}
	leaf := servers[0].hooks[0].src.Current().Chain[0]
	for i, s := range servers[1:] {
		if !s.hooks[0].src.Current().Chain[0].Equal(leaf) {
			t.Errorf("replica %d serves a different cert", i+2)
		}
	}
}

func testExpiry(t *testing.T) {
	tc := newCase(t, "expiry", true)
	tc.validity = 20 * time.Second
	s := start(t, tc.options(), tc.webhook(freePort(t)))
	s.waitReady(t)
	tc.waitAdmitting(t)
	first := tc.secret(t)
	l := tc.startLoop()
	serials := map[string]bool{}
	deadline := time.Now().Add(32 * time.Second)
	for time.Now().Before(deadline) {
		if c := s.hooks[0].src.Current(); c != nil {
			serials[c.Chain[0].SerialNumber.String()] = true
			if !time.Now().Before(c.Chain[0].NotAfter) {
				t.Errorf("serving an expired cert (notAfter %s)", c.Chain[0].NotAfter)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.Finish(t)
	if len(serials) < 2 {
		t.Errorf("served %d distinct certs over 32s of 20s certs, want renewals", len(serials))
	}
	if tc.secret(t).ResourceVersion == first.ResourceVersion {
		t.Error("Secret never renewed")
	}
}

// testNearCAExpiry: in its CA's last minutes (a CA let expire: BYO, Vault,
// cert-manager, or auto-rotation off) every serving cert the CA signs is cut
// at its end and, backdated certs.ClockSkew, past its renewal point from the
// start. Renewing cannot give a longer one, so the Secret is written once,
// not rewritten back to back (each write kicked the next pass) until the CA
// expired; the webhook keeps admitting meanwhile.
func testNearCAExpiry(t *testing.T) {
	tc := newCase(t, "nearcaexpiry", true)
	tc.ca = certstest.MustNew(t, certstest.Options{RootValidity: 2 * time.Minute, Backdate: certs.ClockSkew})
	s := start(t, tc.options(), tc.webhook(freePort(t)))
	s.waitReady(t)
	tc.waitAdmitting(t)
	sec := tc.secret(t)
	w, err := tc.cs.CoreV1().Secrets(tc.ns).Watch(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", sec.Name).String(), ResourceVersion: sec.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	l := tc.startLoop()
	const watchFor = 5 * time.Second // five resyncs
	writes, end := 0, time.After(watchFor)
	for done := false; !done; {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Modified {
				writes++
			}
		case <-end:
			done = true
		}
	}
	l.Finish(t)
	if writes > 0 {
		t.Errorf("serving-cert Secret rewritten %d times in %s with a CA 2 min from its end (issued %d certs); want none: renewing cannot outlive the CA", writes, watchFor, tc.ca.Issued())
	}
}

// testEditedCACrtRepaired: someone edits the serving-cert Secret's ca.crt
// (another valid CA certificate, tls.crt and tls.key untouched). The server
// proves its listener with that ca.crt, so /readyz fails until the Secret
// is repaired; it must be, rather than leave every replica unready for good.
func testEditedCACrtRepaired(t *testing.T) {
	tc := newCase(t, "cacrt", true)
	r := start(t, tc.options(), tc.webhook(freePort(t)))
	r.waitReady(t)

	other := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	sec := tc.secret(t)
	sec.Data[servingcert.KeyCA] = certs.EncodeCertsPEM(other.Active())
	edited, err := tc.cs.CoreV1().Secrets(tc.ns).Update(context.Background(), sec, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := r.hooks[0]
	waitFor(t, settleWithin, "the edited Secret repaired and /readyz passing again", func() error {
		cur := tc.secret(t)
		if cur.ResourceVersion == edited.ResourceVersion {
			return fmt.Errorf("Secret %s/%s still holds the edited %s", tc.ns, cur.Name, servingcert.KeyCA)
		}
		if served := h.src.Current(); served == nil || served.ResourceVersion != cur.ResourceVersion {
			return errTest("repaired Secret not served yet")
		}
		return h.serving(time.Now())
	})
	// The edited CA may have been published meanwhile; it must not stay.
	waitFor(t, settleWithin, "the caBundle without the edited CA", func() error {
		cas, err := certs.ParseCertsPEM(tc.config(t).Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			return err
		}
		for _, c := range cas {
			if c.Equal(other.Active()) {
				return errTest("caBundle still holds the edited CA " + c.Subject.CommonName)
			}
		}
		return nil
	})
}

// testBundleChangeNotified: an issuer that reports bundle changes (tresor,
// watching fsm-ca-bundle) gets a new root into the caBundle at once, long
// before the periodic resync.
func testBundleChangeNotified(t *testing.T) {
	tc := newCase(t, "notified", true)
	w := tc.webhook(freePort(t))
	opts := tc.options()
	opts.ResyncInterval = time.Hour
	s := start(t, opts, w)
	s.waitReady(t)
	if err := tc.ca.AddNextRoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, _, next := tc.ca.Roots()
	waitFor(t, settleWithin, "the next root in the caBundle", func() error {
		if !bytes.Equal(tc.config(t).Webhooks[0].ClientConfig.CABundle, mustBundle(t, tc)) {
			return errTest("caBundle does not match the CA's bundle yet")
		}
		return nil
	})
	if !bytes.Contains(tc.config(t).Webhooks[0].ClientConfig.CABundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: next.Raw})) {
		t.Error("the next root is not in the caBundle")
	}
	s.stop(t)
}

// testRotation: a root rotation, interrupted after each phase and resumed,
// moves the caBundle and the serving cert to the new root with no failed
// admission. Its caBundle writes are updates to a new desired bundle, not
// repairs: fsm_webhooks_cabundle_repairs_total and the CABundleRepaired
// Event (and the FSMWebhooksCABundleRepairs alert on them) mean someone
// else changed the caBundle, and every planned rotation counted two per
// webhook.
func testRotation(t *testing.T) {
	tc := newCase(t, "rotation", true)
	w := tc.webhook(freePort(t))
	s := start(t, tc.options(), w)
	s.waitReady(t)
	tc.waitAdmitting(t)
	repairs := caBundleRepairs.WithLabelValues(w.Name, ValidatingConfiguration.String())
	repairs0 := testutil.ToFloat64(repairs)
	oldRoot := tc.ca.Active()
	trusted, err := TrustCheck(env.Config, Options{}, []Registration{w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	var phases []rootrotation.Phase
	opts := rootrotation.Options{
		CA: tc.ca, Issuer: tc.ca, Client: tc.cs,
		Specs:        []servingcert.Spec{w.ServingSpec(tc.options())},
		Trusted:      trusted,
		Grace:        3 * time.Second,
		PollInterval: 200 * time.Millisecond,
		Settle:       time.Second,
		Log:          testLog(t, "rotation"),
	}
	l := tc.startLoop()
	time.Sleep(300 * time.Millisecond)

	// Crash after phase 1 and again after phase 2; resume each time.
	ctx, cancel := context.WithCancel(context.Background())
	opts.OnPhase = func(st rootrotation.Status) { phases = append(phases, st.Phase); cancel() }
	if err := rootrotation.Rotate(ctx, opts); err == nil {
		t.Fatal("interrupted rotation reported success")
	}
	if st, _ := tc.ca.RotationStatus(context.Background()); st.Phase != rootrotation.PhaseNextRootAdded {
		t.Fatalf("after the first crash: phase %q", st.Phase)
	}
	ctx, cancel = context.WithCancel(context.Background())
	if err := rootrotation.Resume(ctx, opts); err == nil {
		t.Fatal("interrupted rotation reported success")
	}
	if st, _ := tc.ca.RotationStatus(context.Background()); st.Phase != rootrotation.PhaseNextRootActive {
		t.Fatalf("after the second crash: phase %q", st.Phase)
	}
	opts.OnPhase = func(st rootrotation.Status) { phases = append(phases, st.Phase) }
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rootrotation.Resume(ctx, opts); err != nil {
		t.Fatal(err)
	}
	newRoot := awaitNewRootOnly(t, tc, oldRoot)
	time.Sleep(time.Second)
	l.Finish(t)
	if err := certs.ChainsTo(tc.secret(t).Data[servingcert.KeyCert], newRoot, time.Now()); err != nil {
		t.Error(err)
	}
	want := []rootrotation.Phase{rootrotation.PhaseNextRootAdded, rootrotation.PhaseNextRootActive, rootrotation.PhaseIdle}
	if len(phases) != len(want) {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	for i := range want {
		if phases[i] != want[i] {
			t.Fatalf("phases %v, want %v", phases, want)
		}
	}
	// Resume with nothing in progress is a no-op.
	if err := rootrotation.Resume(ctx, opts); err != nil || !tc.ca.Active().Equal(newRoot) {
		t.Fatalf("idle resume: %v", err)
	}
	if got := testutil.ToFloat64(repairs) - repairs0; got != 0 {
		t.Errorf("a root rotation counted %v caBundle repair(s), want 0", got)
	}
	evs, err := tc.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", tc.configName()).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == "CABundleRepaired" {
			t.Errorf("a root rotation recorded Event CABundleRepaired: %s", e.Message)
		}
	}
	// Someone else's write is still a repair.
	cfg := tc.config(t)
	cfg.Webhooks[0].ClientConfig.CABundle = []byte("garbage")
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(context.Background(), cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "the overwritten caBundle repaired and counted", func() error {
		if got := testutil.ToFloat64(repairs) - repairs0; got != 1 {
			return fmt.Errorf("%v repair(s) counted", got)
		}
		return nil
	})
}

// testTwoEntries: a configuration with two webhooks calling one server (the
// validator's): the caBundle, its repair and status are the whole
// configuration's, whichever entry drifts.
func testTwoEntries(t *testing.T) {
	tc := newCase(t, "two", true)
	w := tc.webhook(freePort(t))
	second := *w.Registration.Validating.Webhooks[0].DeepCopy()
	second.Name = "deny-secrets.test.flomesh.io"
	second.Rules[0].Resources = []string{"secrets"}
	w.Registration.Validating.Webhooks = append(w.Registration.Validating.Webhooks, second)
	admitSecret := func() error {
		_, err := tc.cs.CoreV1().Secrets(tc.workNS).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Labels: map[string]string{"deny": "true"}},
		}, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), denyMessage) {
			return fmt.Errorf("Secret through the second entry: %v", err)
		}
		return nil
	}
	bothGood := func(good []byte) error {
		for _, e := range tc.config(t).Webhooks {
			if !bytes.Equal(e.ClientConfig.CABundle, good) {
				return fmt.Errorf("entry %s has caBundle %s", e.Name, describeBundle(e.ClientConfig.CABundle))
			}
		}
		return nil
	}
	s := start(t, tc.options(), w)
	s.waitReady(t)
	good := mustBundle(t, tc)
	if err := bothGood(good); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "admission through the first entry", func() error { return tc.admitOnce(context.Background()) })
	waitFor(t, settleWithin, "admission through the second entry", admitSecret)

	// Someone reverts the second entry only: it is repaired.
	cfg := tc.config(t)
	cfg.Webhooks[1].ClientConfig.CABundle = otherBundle(t, newCA(t))
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(context.Background(), cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "second entry repaired", func() error { return bothGood(good) })
	waitFor(t, settleWithin, "admission through the second entry after repair", admitSecret)

	// With the server stopped and the entries split, readers outside the
	// server (certs status, root rotation) are told which two differ.
	s.stop(t)
	cfg = tc.config(t)
	cfg.Webhooks[1].ClientConfig.CABundle = otherBundle(t, newCA(t))
	if _, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(context.Background(), cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	bundle, found, split, err := NewCABundleReader(tc.cs, nil).Read(context.Background(), w.Registration)
	if err != nil {
		t.Fatal(err)
	}
	const wantSplit = "webhooks deny.test.flomesh.io and deny-secrets.test.flomesh.io carry different caBundles"
	if !found || bundle != nil || split != wantSplit {
		t.Fatalf("split caBundles read as found %v, bundle %d bytes, split %q", found, len(bundle), split)
	}
	trusted, err := TrustCheck(env.Config, Options{}, []Registration{w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	if err := trusted(context.Background(), tc.ca.Active()); err == nil || !strings.Contains(err.Error(), wantSplit) {
		t.Errorf("TrustCheck of split caBundles: %v, want %q", err, wantSplit)
	}
}

func testAutoRotation(t *testing.T) {
	tc := newCase(t, "autorotate", true)
	w := tc.webhook(freePort(t))
	s := start(t, tc.options(), w)
	s.waitReady(t)
	tc.waitAdmitting(t)
	trusted, err := TrustCheck(env.Config, Options{}, []Registration{w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := tc.ca.Active()
	l := tc.startLoop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The 24h root is within 25h of expiry: Auto rotates it.
		done <- rootrotation.Auto(ctx, rootrotation.Options{
			CA: tc.ca, Issuer: tc.ca, Client: tc.cs, Specs: []servingcert.Spec{w.ServingSpec(tc.options())},
			Trusted: trusted, Grace: time.Second, PollInterval: 100 * time.Millisecond, Settle: time.Second,
			Log: testLog(t, "auto"),
		}, 25*time.Hour, 200*time.Millisecond)
	}()
	waitFor(t, 30*time.Second, "automatic rotation completed", func() error {
		st, err := tc.ca.RotationStatus(context.Background())
		if err != nil {
			return err
		}
		if st.Current.Equal(oldRoot) || st.Phase != rootrotation.PhaseIdle {
			return errTest("phase " + string(st.Phase))
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	l.Finish(t)
	if err := certs.ChainsTo(tc.secret(t).Data[servingcert.KeyCert], tc.ca.Active(), time.Now()); err != nil {
		t.Error(err)
	}
}

func testRenewServingCerts(t *testing.T) {
	tc := newCase(t, "renew", true)
	w := tc.webhook(freePort(t))
	s := start(t, tc.options(), w)
	s.waitReady(t)
	tc.waitAdmitting(t)
	before := tc.secret(t)
	l := tc.startLoop()
	time.Sleep(300 * time.Millisecond)
	if err := rootrotation.RenewServingCerts(context.Background(), tc.ca, tc.cs, []servingcert.Spec{w.ServingSpec(tc.options())}, testLog(t, "renew")); err != nil {
		t.Fatal(err)
	}
	after := tc.secret(t)
	if after.ResourceVersion == before.ResourceVersion || bytes.Equal(after.Data[servingcert.KeyCert], before.Data[servingcert.KeyCert]) {
		t.Fatal("cert not renewed")
	}
	waitFor(t, settleWithin, "renewed cert served", func() error {
		if s.hooks[0].src.Current().ResourceVersion != after.ResourceVersion {
			return errTest("old cert still served")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	l.Finish(t)
}

// checkTLSPolicy: TLS below 1.2 and weak TLS 1.2 suites are refused; a
// modern client is served.
func checkTLSPolicy(t *testing.T, h *hook) {
	t.Helper()
	addr := localAddr("127.0.0.1", h.w.Port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.src.Current().CA)
	dial := func(cfg *tls.Config) error {
		cfg.RootCAs, cfg.ServerName = pool, h.spec.ServerName()
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(&tls.Config{MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatalf("modern client refused: %v", err)
	}
	if err := dial(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Error("weak TLS 1.2 cipher suite accepted")
	}
}

// testRotationBesideAnotherMeshsConverter: two meshes share a CRD and one
// owns its conversion stanza (conversionlease.go). The other never writes
// that caBundle, so its root rotation must not wait for it to hold its next
// root (it waited forever in phase NextRootAdded, and the root expired
// unrotated), while the owner's rotation still checks it.
func testRotationBesideAnotherMeshsConverter(t *testing.T) {
	ctx := context.Background()
	apiext, crd := createTwoVersionCRD(ctx, t, "sprocket", "Sprocket")
	// client-go gives up a lease it cannot renew within renew: 6 s, so a
	// starved CI core does not hand the stanza over mid-test.
	lease := leaseTiming{duration: 8 * time.Second, renew: 6 * time.Second, retry: time.Second}
	type mesh struct {
		tc  *testCase
		w   Webhook
		run *running
	}
	var meshes []*mesh
	for _, name := range []string{"rvmesha", "rvmeshb"} {
		tc, w, s := meshConverter(t, name, crd.Name, lease)
		meshes = append(meshes, &mesh{tc: tc, w: w, run: run(t, s)})
	}
	var owner, other *mesh
	waitFor(t, 30*time.Second, "one mesh owns the stanza", func() error {
		c, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i, m := range meshes {
			if conversionComplete(c) && bytes.Equal(ConversionCABundle(c), mustBundle(t, m.tc)) && m.run.hooks[0].ownsConversion() {
				owner, other = m, meshes[1-i]
				return nil
			}
		}
		return errTest("no owner yet")
	})
	waitFor(t, settleWithin, "the non-owner ready (it only serves)", func() error { return other.run.Ready(ctx) })

	// The non-owning mesh rotates its root, as serve's rootrotation.Auto
	// (or `certs rotate-root`) does.
	trusted, err := TrustCheck(env.Config, other.run.opts, []Registration{other.w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	// A hang guard (the rotation used to wait forever): each phase waits
	// for a server's pass through the apiserver, seconds each when starved.
	const rotateWithin = 2 * settleWithin
	rctx, cancel := context.WithTimeout(ctx, rotateWithin)
	defer cancel()
	err = rootrotation.Rotate(rctx, rootrotation.Options{
		CA: other.tc.ca, Issuer: other.tc.ca, Client: other.tc.cs,
		Specs:   []servingcert.Spec{other.w.ServingSpec(other.run.opts)},
		Trusted: trusted, Grace: time.Second, PollInterval: 200 * time.Millisecond, Settle: 500 * time.Millisecond,
		Log: testLog(t, "rotation"),
	})
	st, _ := other.tc.ca.RotationStatus(ctx)
	if err != nil {
		t.Errorf("mesh %s (stanza owned by mesh %s) could not rotate its root in %s; stuck in phase %q: %v",
			other.run.opts.MeshName, owner.run.opts.MeshName, rotateWithin, st.Phase, err)
	}

	// The owner's own check still reads the stanza: it does not hold the
	// root the other mesh rotated to.
	ownerCheck, err := TrustCheck(env.Config, owner.run.opts, []Registration{owner.w.Registration})
	if err != nil {
		t.Fatal(err)
	}
	if err := ownerCheck(ctx, other.tc.ca.Active()); err == nil || !strings.Contains(err.Error(), "does not hold root") {
		t.Errorf("the owner's trust check of a root its stanza does not hold = %v, want it to wait", err)
	}
}

// testTrustCheckCRDWithoutConversionWebhook: with no converter served
// (`serve --webhooks injector,validator`) the MeshConfig CRD calls no
// conversion webhook (strategy None), yet root rotation checks every hook's
// registration. Such a CRD has no caBundle that must hold the next root:
// waiting for one left the rotation in NextRootAdded for good.
func testTrustCheckCRDWithoutConversionWebhook(t *testing.T) {
	ctx := context.Background()
	_, crd := createTwoVersionCRD(ctx, t, "gizmo", "Gizmo")
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	opts := Options{Namespace: "fsm-system", MeshName: "fsm", ConversionLeaseNamespace: DefaultConversionLeaseNamespace}
	check, err := TrustCheck(env.Config, opts, []Registration{{Kind: CRDConversion, Name: crd.Name}})
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, ca.Active()); err != nil {
		t.Errorf("TrustCheck on a CRD with no conversion webhook: %v", err)
	}
}
