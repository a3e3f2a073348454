//go:build e2enode

package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flomesh-io/fsm-webhooks/test/node"
)

func TestMain(m *testing.M) {
	// controller-runtime's client logs through this; the components' own
	// logs are in the cluster's LogDir.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// TestNode runs workloads on the node: a pod with a Secret volume serving
// that Secret, reached through its Service from another pod (kube-proxy),
// and the garbage collector of kube-controller-manager removing a Secret
// owned by a pod once the pod is deleted.
func TestNode(t *testing.T) {
	c := node.Start(t, node.Options{})
	const ns = "node-e2e"
	c.CreateNamespace(t, ns, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := c.Clientset

	value := randomHex(t)
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "served"},
		StringData: map[string]string{"value": value},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Labels: map[string]string{"app": "server"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "serve",
				Image:           node.ToolboxImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"serve", ":8080", "/etc/served/value"},
				Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "served", MountPath: "/etc/served", ReadOnly: true}},
				// Ready through the kubelet's own prober.
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
			Volumes: []corev1.Volume{{
				Name:         "served",
				VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "served"}},
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	server, err := cs.CoreV1().Pods(ns).Create(ctx, server, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "server"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pod with a Secret volume is Running and Ready", func(t *testing.T) {
		start := time.Now()
		c.WaitFor(t, "pod server to be Ready", 2*time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "server", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || !podReady(p) {
				return fmt.Errorf("phase %s, ready %v: %s", p.Status.Phase, podReady(p), podReasons(p))
			}
			return nil
		})
		t.Logf("server Running and Ready %s after create", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("Service routes from another pod", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:            "get",
					Image:           node.ToolboxImage,
					ImagePullPolicy: corev1.PullNever,
					Args:            []string{"get", url, "60s"},
				}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, "pod client to finish", 2*time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "client", metav1.GetOptions{})
			if err != nil {
				return err
			}
			switch p.Status.Phase {
			case corev1.PodSucceeded:
				return nil
			case corev1.PodFailed:
				t.Fatalf("client pod failed: %s\nlogs:\n%s", podReasons(p), podLogs(t, c, ns, "client"))
			}
			return fmt.Errorf("phase %s: %s", p.Status.Phase, podReasons(p))
		})
		// The log holds the tool's retries (stderr, "attempt N: ...": the
		// pod may start before kube-proxy routes the Service) and then what
		// the server answered.
		logs := strings.TrimSpace(podLogs(t, c, ns, "client"))
		if got := logs[strings.LastIndex(logs, "\n")+1:]; got != value {
			t.Errorf("client got %q through %s, want the Secret's value %q (log: %q)", got, url, value, logs)
		} else if logs != got {
			t.Logf("client retried before the Service routed: %q", logs)
		}
	})

	t.Run("garbage collector removes a Secret owned by a deleted pod", func(t *testing.T) {
		owned, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: "owned-by-server",
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Pod", Name: server.Name, UID: server.UID,
				}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Still there while its owner exists: the collector acts on the
		// deletion, not on the Secret's creation.
		time.Sleep(2 * time.Second)
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, owned.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("owned Secret with a live owner: %v", err)
		}
		if err := cs.CoreV1().Pods(ns).Delete(ctx, server.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.WaitFor(t, "the owned Secret to be garbage-collected", 2*time.Minute, func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, owned.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("secret %s/%s still exists", ns, owned.Name)
		})
		t.Logf("owned Secret collected %s after the pod delete", time.Since(start).Round(100*time.Millisecond))
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podReasons summarises why a pod is not there yet, for wait errors.
func podReasons(p *corev1.Pod) string {
	s := ""
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf("%s: %s; ", c.Type, c.Message)
		}
	}
	for _, st := range p.Status.ContainerStatuses {
		switch {
		case st.State.Waiting != nil:
			s += fmt.Sprintf("%s waiting: %s %s; ", st.Name, st.State.Waiting.Reason, st.State.Waiting.Message)
		case st.State.Terminated != nil:
			s += fmt.Sprintf("%s terminated: %s exit %d %s; ", st.Name, st.State.Terminated.Reason, st.State.Terminated.ExitCode, st.State.Terminated.Message)
		}
	}
	return s
}

func podLogs(t *testing.T, c *node.Cluster, ns, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := c.Clientset.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of pod %s/%s (through the kubelet): %v", ns, name, err)
	}
	return string(b)
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
