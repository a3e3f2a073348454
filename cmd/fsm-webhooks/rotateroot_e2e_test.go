package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
)

// TestRotateRootNeedsTheMeshCA: while fsm-ca-bundle is missing `certs
// rotate-root` fails with NotFound naming it (certs/rootrotation/README.md).
// Pointed at a namespace (or --ca-bundle-secret-name) holding no CA Secret,
// it minted a new root there, rotated it to NextRootActive and wrote three
// serving-cert Secrets nobody asked for.
func TestRotateRootNeedsTheMeshCA(t *testing.T) {
	const ns = "rot-system"
	env, kubeconfig := adminEnv(t, ns)
	serversDeployment(t, env, ns, "rot", "--fsm-namespace="+ns, "--mesh-name=rot")
	ctx := context.Background()
	// A hang guard: the refusal comes after a few reads through the
	// apiserver, which a loaded machine can stretch to seconds each.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
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
	names := make([]string, 0, len(secrets.Items))
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

// TestRotateRootRunsWithTheServersConfiguration: rotate-root takes the mesh
// and the CA from the servers' Deployment, as certs status does. With a
// mistyped --mesh-name it found none of the mesh's webhook configurations
// to wait for, re-issued the serving certs from the new root before any
// caBundle trusted it, and looked for the pods' certificates under the
// wrong mesh; now it refuses before writing anything.
func TestRotateRootRunsWithTheServersConfiguration(t *testing.T) {
	const ns = "teal-system"
	env, kubeconfig := adminEnv(t, ns)
	ctx := context.Background()
	store := &tresor.Store{Client: env.Clientset, Namespace: ns, Name: "teal-ca"}
	if _, err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	serversDeployment(t, env, ns, "teal", "--fsm-namespace="+ns, "--mesh-name=teal", "--ca-bundle-secret-name=teal-ca")
	runCtx := func(rctx context.Context, args ...string) error {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"certs", "rotate-root", "--kubeconfig=" + kubeconfig}, args...))
		err := root.ExecuteContext(rctx)
		t.Logf("rotate-root %v: %v", args, err)
		return err
	}
	run := func(timeout time.Duration, args ...string) error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return runCtx(rctx, args...)
	}
	phase := func() string {
		st, err := store.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(st.Rotation.Phase)
	}
	secrets := func() int {
		l, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}

	err := run(time.Minute, "--mesh-name=tael") // a hang guard, as above
	if err == nil || !strings.Contains(err.Error(), "no fsm-webhooks Deployment found") || !strings.Contains(err.Error(), "app.kubernetes.io/instance=tael") {
		t.Errorf("error %v; want one saying no Deployment of mesh tael was found", err)
	}
	if p, n := phase(), secrets(); p != "" || n != 1 {
		t.Fatalf("after the refused run: phase %q, %d Secret(s) in %s; want no rotation and only the CA Secret", p, n, ns)
	}

	// Nothing but the kubeconfig: the Deployment's namespace, mesh and CA
	// Secret. The run starts the rotation there and waits out the grace
	// period, which the test does not: it stops the run once the new root
	// is active (key generation under -race on a loaded machine takes
	// seconds, so no fixed deadline).
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runCtx(rctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for p := phase(); p != "NextRootActive"; p = phase() {
		select {
		case err := <-done:
			t.Fatalf("rotate-root ended (%v) in phase %q; want it waiting out the grace period after NextRootActive", err, p)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %q in %s/teal-ca after 60 s; want NextRootActive", p, ns)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("error %v; want the cancel while waiting out the grace period", err)
	}
}
