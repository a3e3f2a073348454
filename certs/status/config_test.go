package status

import (
	"context"
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func deployment(ns, name, mesh string, containers ...corev1.Container) *appsv1.Deployment {
	l := map[string]string{MeshLabel: mesh}
	maps.Copy(l, ServerLabels)
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: containers}}}}
}

// TestDeploymentFlags: the serve container's args in every spelling, env
// FSM_<FLAG> under them, valueFrom not read.
func TestDeploymentFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		containers []corev1.Container
		want       map[string]string
		wantErr    string
	}{
		{"chart args", []corev1.Container{{Name: "fsm-webhooks", Args: []string{"serve", "--fsm-namespace=mesh", "--certificate-manager=vault", "--vault-host=v.x", "--strict-policy-validation"}}},
			map[string]string{"fsm-namespace": "mesh", "certificate-manager": "vault", "vault-host": "v.x", "strict-policy-validation": "true"}, ""},
		{"separate values and command", []corev1.Container{{Command: []string{"/usr/local/bin/fsm-webhooks", "serve"}, Args: []string{"--mesh-name", "blue", "--vault-port", "8201"}}},
			map[string]string{"mesh-name": "blue", "vault-port": "8201"}, ""},
		{"env under args", []corev1.Container{{Args: []string{"serve", "--mesh-name=blue"}, Env: []corev1.EnvVar{
			{Name: "FSM_MESH_NAME", Value: "red"}, {Name: "FSM_VAULT_ROLE", Value: "r"},
			{Name: "FSM_VAULT_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "t"}}}, {Name: "OTHER", Value: "x"}}}},
			map[string]string{"mesh-name": "blue", "vault-role": "r"}, ""},
		{"sidecar containers skipped", []corev1.Container{{Name: "proxy", Args: []string{"--mesh-name=no"}}, {Name: "s", Args: []string{"serve", "--mesh-name=yes"}}},
			map[string]string{"mesh-name": "yes"}, ""},
		{"no serve container", []corev1.Container{{Args: []string{"local"}}}, nil, "deployment fsm-system/fsm-webhooks: no container runs `fsm-webhooks serve`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeploymentFlags(deployment("fsm-system", "fsm-webhooks", "fsm", tc.containers...))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestFindDeployment: by name, by the chart's labels narrowed by namespace
// and mesh, none, and an ambiguity named.
func TestFindDeployment(t *testing.T) {
	serve := corev1.Container{Args: []string{"serve"}}
	cs := fake.NewClientset(deployment("a", "fsm-webhooks", "fsm", serve), deployment("b", "fsm-webhooks", "blue", serve),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "unlabelled"}})
	for _, tc := range []struct {
		name, namespace, deployment, mesh string
		want, wantErr                     string
	}{
		{"only one in a namespace", "a", "", "", "a/fsm-webhooks", ""},
		{"by mesh anywhere", "", "", "blue", "b/fsm-webhooks", ""},
		{"by name", "a", "unlabelled", "", "a/unlabelled", ""},
		{"none", "c", "", "", "", ""},
		{"ambiguous", "", "", "", "", "2 fsm-webhooks Deployments labelled app.kubernetes.io/component=webhooks,app=fsm-webhooks in all namespaces (a/fsm-webhooks, b/fsm-webhooks)"},
		{"name without namespace", "", "x", "", "", `--deployment "x": --fsm-namespace must name its namespace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := FindDeployment(context.Background(), cs, tc.namespace, tc.deployment, tc.mesh)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if d != nil {
				got = d.Namespace + "/" + d.Name
			}
			if got != tc.want {
				t.Fatalf("found %q, want %q", got, tc.want)
			}
		})
	}
}
