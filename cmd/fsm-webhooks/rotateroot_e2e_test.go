package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRotateRootNeedsTheMeshCA: while fsm-ca-bundle is missing `certs
// rotate-root` fails with NotFound naming it (certs/rootrotation/README.md).
// Pointed at a namespace (or --ca-bundle-secret-name) holding no CA Secret,
// it minted a new root there, rotated it to NextRootActive and wrote three
// serving-cert Secrets nobody asked for.
func TestRotateRootNeedsTheMeshCA(t *testing.T) {
	const ns = "rot-system"
	env, kubeconfig := adminEnv(t, ns)
	ctx := context.Background()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"certs", "rotate-root", "--kubeconfig=" + kubeconfig, "--fsm-namespace=" + ns, "--mesh-name=rot"})
	runErr := root.ExecuteContext(rctx)
	t.Logf("rotate-root returned: %v", runErr)

	secrets, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range secrets.Items {
		names = append(names, s.Name+" (phase "+string(s.Data["rotation.phase"])+")")
	}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, "fsm-ca-bundle", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("rotate-root created CA Secret %s/fsm-ca-bundle (err %v); Secrets now in %s: %v", ns, err, ns, names)
	}
	if !apierrors.IsNotFound(runErr) || !strings.Contains(runErr.Error(), ns+"/fsm-ca-bundle") {
		t.Errorf("rotate-root error %v; want NotFound naming %s/fsm-ca-bundle", runErr, ns)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("rotate-root wrote Secrets in %s: %v", ns, names)
	}
}
