//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/node"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

const (
	chartNS = "fsm-system"
	// chartImage is the image the chart names with its default values
	// (registry flomesh, tag = appVersion), so the chart installs unchanged.
	chartImage = "flomesh/fsm-webhooks:0.1.0"
)

// fsmWebhooksImage builds the repository's image as its Dockerfile does: a
// static binary at /usr/local/bin/fsm-webhooks, run as 65532 with "serve".
func fsmWebhooksImage(t *testing.T) images.Spec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fsm-webhooks")
	if err := images.GoBinary(ctx, testenv.RepoRoot(), "./cmd/fsm-webhooks", bin); err != nil {
		t.Fatal(err)
	}
	return images.Spec{
		Tag:        chartImage,
		Files:      []images.File{{Path: "/usr/local/bin/fsm-webhooks", Source: bin, Mode: 0o755}},
		Dirs:       map[string]int64{"/tmp": 0o1777},
		Entrypoint: []string{"/usr/local/bin/fsm-webhooks"},
		Cmd:        []string{"serve"},
		User:       "65532:65532",
	}
}

// TestChartOnNode installs the chart with Helm and runs it under the
// kubelet: both replicas Ready through the chart's own probes, webhooks
// registered by Service, and the bootstrap Secrets of a Deployment's pods
// removed by kube-controller-manager's garbage collector after the
// Deployment is deleted.
func TestChartOnNode(t *testing.T) {
	c := node.Start(t, node.Options{Images: []images.Spec{fsmWebhooksImage(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	installChart(ctx, t, c)
	cs := c.Clientset

	t.Run("both replicas Ready through the kubelet's probes", func(t *testing.T) {
		c.WaitFor(t, "deployment fsm-webhooks to have 2 ready replicas", 4*time.Minute, func(ctx context.Context) error {
			d, err := cs.AppsV1().Deployments(chartNS).Get(ctx, "fsm-webhooks", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Status.ReadyReplicas != 2 || d.Status.UpdatedReplicas != 2 {
				return fmt.Errorf("ready %d, updated %d of 2; pods: %s", d.Status.ReadyReplicas, d.Status.UpdatedReplicas, podsSummary(ctx, cs, chartNS))
			}
			return nil
		})
		t.Logf("2 replicas Ready %s after helm install", time.Since(start).Round(100*time.Millisecond))
		pods, err := cs.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhooks"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || p.Spec.Containers[0].Image != chartImage {
				t.Errorf("pod %s: phase %s ready %v image %s", p.Name, p.Status.Phase, podReady(&p), p.Spec.Containers[0].Image)
			}
		}
	})

	t.Run("webhooks are registered by Service with a caBundle", func(t *testing.T) {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "fsm-webhook-fsm", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "fsm-validator-mesh-fsm", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var configs []admv1.WebhookClientConfig
		for _, w := range mwc.Webhooks {
			configs = append(configs, w.ClientConfig)
		}
		for _, w := range vwc.Webhooks {
			configs = append(configs, w.ClientConfig)
		}
		if len(configs) == 0 {
			t.Fatal("no webhooks registered")
		}
		for _, cc := range configs {
			if cc.Service == nil || cc.URL != nil || len(cc.CABundle) == 0 {
				t.Errorf("webhook client config %+v: want a service reference, no url, a caBundle", cc)
			}
		}
	})

	t.Run("bootstrap Secrets follow a Deployment's pods through scale-down and delete", func(t *testing.T) {
		const ns, replicas = "meshed", 50
		c.CreateNamespace(t, ns, map[string]string{"flomesh.io/monitored-by": "fsm"})
		labels := map[string]string{"app": "meshed"}
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "meshed"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](replicas),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{
						Labels:      labels,
						Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"},
					},
					Spec: corev1.PodSpec{
						// The injected sidecar's images are not on the node
						// and must not be pulled from the internet: the pods
						// are admitted and owned but never scheduled.
						NodeSelector: map[string]string{"fsm-node/never": "true"},
						Containers: []corev1.Container{{
							Name: "app", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever,
							Args: []string{"pause"},
						}},
					},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, fmt.Sprintf("%d injected pods, each with its bootstrap Secret", replicas), 3*time.Minute, func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(pods.Items) != replicas {
				return fmt.Errorf("%d pods", len(pods.Items))
			}
			for _, p := range pods.Items {
				id := p.Labels[injector.ProxyUUIDLabel]
				if id == "" {
					return fmt.Errorf("pod %s not injected (no %s label)", p.Name, injector.ProxyUUIDLabel)
				}
				s, err := cs.CoreV1().Secrets(ns).Get(ctx, fsmnames.BootstrapSecretPrefix+id, metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("pod %s: %w", p.Name, err)
				}
				// The injector's controller deletes it with the pod and
				// never writes an owner reference (issue 20, design (a)).
				if len(s.OwnerReferences) != 0 {
					return fmt.Errorf("secret %s owners %v, want none", s.Name, s.OwnerReferences)
				}
			}
			return nil
		})
		// Scale down: the removed pods' Secrets go with them, the kept
		// pods' Secrets stay (Secrets = pods).
		const down = 10
		if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "meshed", &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: "meshed", Namespace: ns},
			Spec:       autoscalingv1.ScaleSpec{Replicas: down},
		}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, fmt.Sprintf("%d pods and their %d bootstrap Secrets after scaling down", down, down), time.Minute, func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			want := map[string]bool{}
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					want[fsmnames.BootstrapSecretPrefix+p.Labels[injector.ProxyUUIDLabel]] = true
				}
			}
			got := bootstrapSecretNames(ctx, t, cs, ns)
			if len(pods.Items) != down || len(got) != down {
				return fmt.Errorf("%d pods, %d bootstrap Secrets", len(pods.Items), len(got))
			}
			for _, n := range got {
				if !want[n] {
					return fmt.Errorf("secret %s belongs to no live pod", n)
				}
			}
			return nil
		})
		if err := cs.AppsV1().Deployments(ns).Delete(ctx, "meshed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.WaitFor(t, "every bootstrap Secret to be garbage-collected", 2*time.Minute, func(ctx context.Context) error {
			if left := bootstrapSecretNames(ctx, t, cs, ns); len(left) > 0 {
				return fmt.Errorf("%d bootstrap Secrets left: %v", len(left), left)
			}
			return nil
		})
		t.Logf("the last %d bootstrap Secrets collected %s after the Deployment delete", down, time.Since(start).Round(100*time.Millisecond))
	})
}

func bootstrapSecretNames(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) []string {
	t.Helper()
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing Secrets in %s: %v", ns, err)
	}
	var names []string
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, fsmnames.BootstrapSecretPrefix) {
			names = append(names, s.Name)
		}
	}
	return names
}

// podsSummary lists a namespace's pods with their phase and reasons, for
// wait errors.
func podsSummary(ctx context.Context, cs kubernetes.Interface, ns string) string {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "[%s %s %s] ", p.Name, p.Status.Phase, podReasons(&p))
	}
	return b.String()
}
