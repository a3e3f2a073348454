//go:build e2enode

package node_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// deniedLabel marks the pods the test's own validating webhook refuses.
const deniedLabel = "fsm-node-test/deny"

// TestOrphanSweepOnNode: a pod the injector admitted (and wrote a Secret
// for) but a later validating webhook refused never exists, so nothing owns
// its Secret and the garbage collector cannot remove it; the injector's
// sweep must. And `certs status` from outside the cluster, with the node's
// kubeconfig, finds the installed chart healthy.
func TestOrphanSweepOnNode(t *testing.T) {
	ctx, c, _ := startChart(t)
	waitWebhooksReady(t, c, chartImage)
	cs := c.Clientset

	t.Run("certs status from outside the cluster is healthy", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "fsm-webhooks")
		if err := images.GoBinary(ctx, testenv.RepoRoot(), "./cmd/fsm-webhooks", bin); err != nil {
			t.Fatal(err)
		}
		// A replica is Ready once it serves (webhooks/readiness.go); the
		// registrations' caBundles and the CRD's conversion stanza follow,
		// the stanza only once the converter's Service routes to a Ready
		// pod (webhooks/conversionroute.go), which the report checks too.
		// Asked until it reports healthy, not once right after Ready.
		start := time.Now()
		c.WaitFor(t, "fsm-webhooks certs status to report the installed chart healthy", 2*time.Minute, func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, bin, "certs", "status", "--kubeconfig", c.Kubeconfig, "--fsm-namespace", chartNS).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "healthy: yes") {
				return fmt.Errorf("fsm-webhooks certs status: %v\n%s", err, out)
			}
			return nil
		})
		t.Logf("certs status healthy %s after the replicas were Ready and its binary built", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("a pod refused by a later webhook leaves no Secret", func(t *testing.T) {
		const ns = "orphans"
		c.CreateNamespace(t, ns, map[string]string{"flomesh.io/monitored-by": "fsm"})
		// The apiserver runs on the host, so it reaches a webhook served by
		// the test process on loopback.
		srv := httptest.NewTLSServer(http.HandlerFunc(denyLabelled))
		defer srv.Close()
		caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		vwc := &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "fsm-node-test-deny"},
			Webhooks: []admv1.ValidatingWebhook{{
				Name:                    "deny.fsm-node-test.local",
				ClientConfig:            admv1.WebhookClientConfig{URL: ptr.To(srv.URL + "/validate"), CABundle: caBundle},
				Rules:                   []admv1.RuleWithOperations{{Operations: []admv1.OperationType{admv1.Create}, Rule: admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				FailurePolicy:           ptr.To(admv1.Fail),
				SideEffects:             ptr.To(admv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
		if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
		}()
		pod := loadPod("refused")
		pod.Labels[deniedLabel] = "true"
		// The webhook configuration takes effect once the apiserver's
		// informer has it: retry until the create is refused by it.
		var refusal error
		c.WaitFor(t, "the test webhook to refuse a labelled pod", 2*time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err == nil {
				_ = cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
				return fmt.Errorf("pod %s admitted", p.Name)
			}
			if !strings.Contains(err.Error(), "denied by the test") {
				return err
			}
			refusal = err
			return nil
		})
		t.Logf("refused: %v", refusal)
		// Wait for the pods the informer-lag retries created to be gone,
		// with their Secrets (garbage collector).
		c.WaitFor(t, "no pods left in "+ns, time.Minute, func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(pods.Items) > 0 {
				return fmt.Errorf("%d pods", len(pods.Items))
			}
			return nil
		})
		secrets := bootstrapSecretNames(ctx, t, cs, ns)
		if len(secrets) == 0 {
			t.Fatal("the injector wrote no bootstrap Secret for the refused pod: nothing to sweep (did the injector run first?)")
		}
		for _, name := range secrets {
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && len(s.OwnerReferences) > 0 {
				t.Errorf("secret %s of a refused pod has owners %v", name, s.OwnerReferences)
			}
		}
		start := time.Now()
		c.WaitFor(t, "the refused pod's bootstrap Secret to be swept", 90*time.Second+injector.DefaultOrphanGracePeriod/2, func(ctx context.Context) error {
			if left := bootstrapSecretNames(ctx, t, cs, ns); len(left) > 0 {
				return fmt.Errorf("%d bootstrap Secrets left: %v", len(left), left)
			}
			return nil
		})
		t.Logf("%d orphaned bootstrap Secret(s) (prefix %s) swept %s after the refusal", len(secrets), fsmnames.BootstrapSecretPrefix, time.Since(start).Round(time.Second))
	})
}

// denyLabelled is a validating webhook refusing pods that carry deniedLabel.
func denyLabelled(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("decoding AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	allowed := true
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil && pod.Labels[deniedLabel] != "" {
		allowed = false
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: allowed}
	if !allowed {
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: "denied by the test's webhook (label " + deniedLabel + ")"}
	}
	review.Response = resp
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
