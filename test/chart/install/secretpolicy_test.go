package install_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// secretWritesConfined: with the chart's ValidatingAdmissionPolicy the
// servers' ServiceAccount (impersonated) can still write bootstrap Secrets in
// app namespaces and any Secret in the fsm namespace, but no other Secret:
// RBAC alone would let it overwrite or delete every Secret in the cluster.
func secretWritesConfined(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const app = "vap-app"
	admin := env.Clientset
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-credentials", Namespace: app}, StringData: map[string]string{"password": "x"}}
	if _, err := admin.CoreV1().Secrets(app).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(namespace, name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, StringData: map[string]string{"k": "v"}}
	}
	const denied = "the fsm-webhooks ServiceAccount may only write Secrets named sidecar-bootstrap-config-* outside fsm-system, not vap-app/"

	// The apiserver loads a new policy asynchronously: wait until it denies.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sa.CoreV1().Secrets(app).Create(ctx, secret(app, "app-tls"), metav1.CreateOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), denied+"app-tls") {
			break
		}
		if err == nil {
			_ = admin.CoreV1().Secrets(app).Delete(ctx, "app-tls", metav1.DeleteOptions{})
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating app-tls as the ServiceAccount: %v, want Forbidden %q", err, denied+"app-tls")
		}
		time.Sleep(200 * time.Millisecond)
	}

	tests := []struct {
		name    string
		write   func() error
		allowed bool
	}{
		{"create a bootstrap Secret in an app namespace", func() error {
			_, err := sa.CoreV1().Secrets(app).Create(ctx, secret(app, "sidecar-bootstrap-config-vap"), metav1.CreateOptions{})
			return err
		}, true},
		{"make it owned by its pod (merge patch)", func() error {
			_, err := sa.CoreV1().Secrets(app).Patch(ctx, "sidecar-bootstrap-config-vap", types.MergePatchType, []byte(`{"metadata":{"labels":{"adopted":"yes"}}}`), metav1.PatchOptions{})
			return err
		}, true},
		{"delete it as an orphan", func() error {
			return sa.CoreV1().Secrets(app).Delete(ctx, "sidecar-bootstrap-config-vap", metav1.DeleteOptions{})
		}, true},
		{"overwrite the app's own Secret", func() error {
			_, err := sa.CoreV1().Secrets(app).Patch(ctx, "app-credentials", types.MergePatchType, []byte(`{"stringData":{"password":"stolen"}}`), metav1.PatchOptions{})
			return err
		}, false},
		{"delete the app's own Secret", func() error {
			return sa.CoreV1().Secrets(app).Delete(ctx, "app-credentials", metav1.DeleteOptions{})
		}, false},
		{"create any Secret in the fsm namespace (serving certs, CA)", func() error {
			_, err := sa.CoreV1().Secrets(ns).Create(ctx, secret(ns, "vap-serving-cert"), metav1.CreateOptions{})
			return err
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			if tc.allowed && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.allowed && (!apierrors.IsForbidden(err) || !strings.Contains(err.Error(), denied)) {
				t.Fatalf("got %v, want Forbidden by the policy (%q)", err, denied)
			}
		})
	}
	got, err := admin.CoreV1().Secrets(app).Get(ctx, "app-credentials", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "x" {
		t.Errorf("the app's Secret changed: %v %q", err, got.Data["password"])
	}
	_ = admin.CoreV1().Secrets(ns).Delete(ctx, "vap-serving-cert", metav1.DeleteOptions{})
}
