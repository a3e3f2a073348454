//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

// validatorConfig is the chart's ValidatingWebhookConfiguration
// (fsm-validator-mesh-<meshName>, default mesh "fsm").
const validatorConfig = "fsm-validator-mesh-fsm"

// TestReadinessPerPartOnNode breaks the validator's part of the chart's pods
// under the kubelet: its ValidatingWebhookConfiguration is deleted, and the
// chart's RBAC does not let the server re-create it (only update/patch by
// name). The pods' readiness is the injector's, so both stay Ready through
// the kubelet's own probe and the injector keeps admitting, while
// /readyz/validator reports the fault; restoring the configuration heals
// the report.
func TestReadinessPerPartOnNode(t *testing.T) {
	c := node.Start(t, node.Options{Images: []images.Spec{fsmWebhooksImage(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cs := c.Clientset
	installChartReady(ctx, t, c)
	const ns = "readiness"
	c.CreateNamespace(t, ns, map[string]string{monitoredByLabel: "fsm"})
	waitAdmitting(t, c, ns)

	var ips []string
	for _, p := range webhookPods(ctx, t, cs) {
		ips = append(ips, p.Status.PodIP)
	}
	// The end-to-end proofs run in the background on the resync clock: wait
	// for a first healthy report before breaking anything.
	c.WaitFor(t, "/readyz/validator to be healthy on every replica", 2*time.Minute, func(ctx context.Context) error {
		for _, ip := range ips {
			if code, body := readyz(ctx, ip, "/readyz/validator"); code != 200 {
				return fmt.Errorf("%s: %d %s", ip, code, body)
			}
		}
		return nil
	})

	saved, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, validatorConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, validatorConfig, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	broken := time.Now()
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: saved.Name, Labels: saved.Labels, Annotations: saved.Annotations},
			Webhooks:   saved.Webhooks,
		}
		if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
			t.Errorf("restoring %s: %v", validatorConfig, err)
		}
	}
	defer restore() // the chart's uninstall and later tests expect it

	// Until every replica reports the fault, and for 10 s more (three of
	// the chart's readiness periods), the pods must stay Ready, /readyz
	// answer 200 and pod creates be injected.
	var reported time.Time
	c.WaitFor(t, "/readyz/validator to report the deleted configuration, pods staying Ready", 2*time.Minute, func(ctx context.Context) error {
		for _, p := range webhookPods(ctx, t, cs) {
			if !podReady(&p) {
				t.Fatalf("webhook pod %s not Ready %s after the validator's configuration was deleted: %s",
					p.Name, time.Since(broken).Round(100*time.Millisecond), podReasons(&p))
			}
		}
		for _, ip := range ips {
			if code, body := readyz(ctx, ip, "/readyz"); code != 200 {
				t.Fatalf("%s /readyz %d after the validator's configuration was deleted: %s", ip, code, body)
			}
		}
		if pod, err := cs.CoreV1().Pods(ns).Create(ctx, loadPod("readiness"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("pod create while the validator is broken: %v", err)
		} else if pod.Labels[proxyUUIDLabel] == "" {
			t.Fatalf("pod created while the validator is broken was not injected: %v", pod.Labels)
		}
		for _, ip := range ips {
			code, body := readyz(ctx, ip, "/readyz/validator")
			if code == 200 {
				return fmt.Errorf("%s /readyz/validator still 200", ip)
			}
			if !strings.Contains(body, validatorConfig) {
				return fmt.Errorf("%s /readyz/validator %d does not name %s: %s", ip, code, validatorConfig, body)
			}
			if reported.IsZero() {
				t.Logf("%s /readyz/validator %d %s after the delete: %s", ip, code, time.Since(broken).Round(100*time.Millisecond), strings.TrimSpace(body))
			}
		}
		if reported.IsZero() {
			reported = time.Now()
		}
		if time.Since(reported) < 10*time.Second {
			return fmt.Errorf("fault reported %s ago: watching readiness 10 s", time.Since(reported).Round(time.Second))
		}
		return nil
	})

	restore()
	healed := time.Now()
	c.WaitFor(t, "/readyz/validator healthy again on every replica after the restore", 2*time.Minute, func(ctx context.Context) error {
		for _, ip := range ips {
			if code, body := readyz(ctx, ip, "/readyz/validator"); code != 200 {
				return fmt.Errorf("%s: %d %s", ip, code, body)
			}
		}
		return nil
	})
	t.Logf("/readyz/validator healthy %s after the restore", time.Since(healed).Round(100*time.Millisecond))
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, loadPod("readiness"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("pod create after the restore: %v", err)
	}
}

// readyz GETs path on a webhook pod's health port (8081, plain HTTP) from
// the host, which reaches pod addresses on the node's bridge.
func readyz(ctx context.Context, podIP, path string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:8081%s", podIP, path), nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := direct.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}
