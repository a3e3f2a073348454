package webhooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

func TestProofCheck(t *testing.T) {
	now := time.Now()
	failed := errors.New("dry run refused")
	cases := []struct {
		name    string
		p       *proof
		state   string
		wantErr string
	}{
		{name: "never ran", p: &proof{}, state: "a", wantErr: "not proven yet"},
		{name: "passed recently", p: &proof{state: "a", at: now.Add(-time.Second)}, state: "a"},
		{name: "passed, check running again", p: &proof{state: "a", at: now.Add(-time.Second), running: now}, state: "a"},
		{name: "passed for another cert", p: &proof{state: "b", at: now.Add(-time.Second)}, state: "a", wantErr: "not proven yet"},
		{name: "passed too long ago", p: &proof{state: "a", at: now.Add(-time.Minute)}, state: "a", wantErr: "last proven 1m0s ago"},
		{name: "failed", p: &proof{state: "a", at: now, err: failed}, state: "a", wantErr: "dry run refused"},
		{name: "first check still running", p: &proof{state: "a", running: now.Add(-4 * time.Second)}, state: "a", wantErr: "running for 4s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.check(c.state, 30*time.Second, now)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("check = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("check = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

// testReadinessPerWebhook: the pod's /readyz stays 200, answers from memory
// in well under the kubelet's 3 s, and the gating webhook keeps admitting
// through the apiserver while its end-to-end probe hangs on a "slow
// apiserver", a report-only webhook's configuration is deleted, and another
// report-only webhook's CRD is missing and its probe fails.
func testReadinessPerWebhook(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "perhook", true)
	opts := tc.options()
	healthPort := freePort(t)
	opts.HealthProbeBindAddress = "127.0.0.1:" + strconv.Itoa(healthPort)

	// The gate (the injector's role): its dry run never returns in time.
	probing := make(chan struct{}, 1)
	gate := tc.webhook(freePort(t))
	gate.Probe = func(ctx context.Context) error {
		select {
		case probing <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	// A report-only validator with its own configuration.
	validator := tc.webhook(freePort(t))
	validator.Name, validator.SecretName, validator.ReportOnly = "validator", "validator-cert", true
	validator.Registration.Name = "report-only-" + tc.name
	validator.Registration.Validating = validator.Registration.Validating.DeepCopy()
	validator.Registration.Validating.Name = validator.Registration.Name
	validator.Registration.Validating.Webhooks[0].Name = "report-only.test.flomesh.io"
	// Rules nobody triggers: only its registration matters here.
	validator.Registration.Validating.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"nobody": "here"}}
	// A report-only converter whose CRD does not exist (a CRD is never
	// created by the server) and whose probe fails.
	converter := Webhook{
		Name: "converter", Port: freePort(t), ServiceName: fsmnames.ConverterService, SecretName: "converter-cert", ReportOnly: true,
		Handlers: map[string]http.Handler{"/convert": convertHandler()},
		Registration: Registration{Kind: CRDConversion, Name: "absent." + tc.name + ".test.flomesh.io", Path: "/convert",
			Conversion: &apiextv1.CustomResourceConversion{Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}}}},
		Probe: func(context.Context) error { return errTest("conversion through the apiserver failed") },
	}
	start(t, opts, gate, validator, converter)

	get := func(path string) (int, string, time.Duration) {
		t.Helper()
		began := time.Now()
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + path)
		if err != nil {
			return 0, err.Error(), time.Since(began)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(began)
	}
	waitFor(t, 30*time.Second, "/readyz 200 and the gate admitting", func() error {
		if code, body, _ := get("/readyz?verbose"); code != http.StatusOK {
			return errTest(body)
		}
		return tc.admitOnce(ctx)
	})
	waitFor(t, settleWithin, "the validator's configuration registered", func() error {
		_, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, validator.Registration.Name, metav1.GetOptions{})
		return err
	})
	select {
	case <-probing:
	case <-time.After(settleWithin):
		t.Fatal("the gate's probe never started")
	}
	if err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, validator.Registration.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// While the gate's probe hangs (10 s) and the others are broken: every
	// /readyz answers from memory and the pod stays ready. The median says
	// how fast; the slowest only that none waited on the probe (1 s, half
	// the chart's probe timeout: a GC pause or a starved CI core may take
	// one answer past 100 ms, never to the probe's 10 s).
	var took []time.Duration
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		code, body, d := get("/readyz")
		took = append(took, d)
		if code != http.StatusOK {
			t.Fatalf("/readyz = %d %s, want 200: a report-only webhook or a hanging probe made the pod unready", code, body)
		}
		code, body, d = get("/readyz/" + gate.Name)
		took = append(took, d)
		if code != http.StatusInternalServerError || !strings.Contains(body, "running for") {
			t.Fatalf("/readyz/%s = %d %s, want 500 naming the probe still running", gate.Name, code, body)
		}
	}
	slices.Sort(took)
	if median := took[len(took)/2]; median >= 100*time.Millisecond {
		t.Errorf("median /readyz answer took %s, want < 100ms", median)
	}
	if slowest := took[len(took)-1]; slowest >= time.Second {
		t.Errorf("slowest /readyz answer took %s, want < 1s (the gate's probe hangs 10 s)", slowest)
	}
	if err := tc.admitOnce(ctx); err != nil {
		t.Fatalf("admission through the gate after the validator's configuration was deleted: %v", err)
	}
	if code, body, _ := get("/readyz/converter"); code != http.StatusInternalServerError || !strings.Contains(body, "not found") {
		t.Errorf("/readyz/converter = %d %s, want 500 naming the missing CRD", code, body)
	}
	// In URL mode the validator recreates its configuration; once it has,
	// its whole state is ready again, and the pod never noticed.
	waitFor(t, settleWithin, "/readyz/validator 200", func() error {
		if code, body, _ := get("/readyz/validator"); code != http.StatusOK {
			return errTest(body)
		}
		return nil
	})
	// Every webhook's whole state, for humans.
	if code, body, _ := get("/readyz/?verbose"); code != http.StatusInternalServerError ||
		!strings.Contains(body, "[-]converter") || !strings.Contains(body, "[+]validator") || !strings.Contains(body, "[-]"+gate.Name) {
		t.Errorf("/readyz/?verbose = %d %s", code, body)
	}
}

// testReportOnlyProbe: a report-only webhook whose registration is fine but
// whose probe fails is reported, and ready in full once the probe passes.
func testReportOnlyProbe(t *testing.T) {
	tc := newCase(t, "reportprobe", true)
	pass := make(chan struct{})
	w := tc.webhook(freePort(t))
	w.ReportOnly = true
	w.Probe = func(context.Context) error {
		select {
		case <-pass:
			return nil
		default:
			return errTest("validator dry run failed")
		}
	}
	s := start(t, tc.options(), w)
	waitFor(t, settleWithin, "probe failure reported", func() error {
		err := s.Ready(context.Background())
		if err == nil || !strings.Contains(err.Error(), "validator dry run failed") {
			return errTest("Ready = " + errString(err))
		}
		return nil
	})
	if n := len(s.PodReadyChecks()); n != 0 {
		t.Errorf("a report-only webhook has %d pod readiness check(s), want none", n)
	}
	close(pass)
	// The probe reruns on its clock (2 × ResyncInterval in tests).
	s.waitReady(t)
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
