package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
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

// TestRotateRootRefusesAClockAhead: rotate-root signs the new root and the
// serving certificates it re-issues with the clock of the machine it runs
// on, valid from certs.ClockSkew (5 min) before that clock's now. Run from a
// machine whose clock was 8 minutes ahead, it activated a root valid only 3
// minutes later in the cluster and wrote serving certificates from it that
// nothing could verify until then: the apiserver refused every webhook call (pod creates
// in meshed namespaces failed) in a "zero-downtime" rotation. Now it
// compares its clock with the apiserver's first and refuses, writing
// nothing.
func TestRotateRootRefusesAClockAhead(t *testing.T) {
	const ns = "skew-system"
	env, kubeconfig := adminEnv(t, ns)
	ctx := context.Background()
	store := &tresor.Store{Client: env.Clientset, Namespace: ns}
	if _, err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	serversDeployment(t, env, ns, "skew", "--fsm-namespace="+ns, "--mesh-name=skew")
	// Past the certs.ClockSkew certificates are now backdated by.
	localClock = func() time.Time { return time.Now().Add(8 * time.Minute) }
	defer func() { localClock = time.Now }()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"certs", "rotate-root", "--kubeconfig=" + kubeconfig})
		done <- root.ExecuteContext(rctx)
	}()
	servingSecrets := func() []corev1.Secret {
		l, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook-serving-cert"})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	// Refused at once, or (before the fix) waiting out the grace period
	// once the serving certificates were re-issued from the new root.
	var runErr error
	deadline := time.Now().Add(90 * time.Second)
wait:
	for {
		select {
		case runErr = <-done:
			break wait
		case <-time.After(200 * time.Millisecond):
		}
		st, err := store.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rotation.Phase == tresor.PhaseNextRootActive && len(servingSecrets()) == 3 {
			cancel()
			runErr = <-done
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotate-root neither refused nor re-issued the serving certs in 90 s (phase %q)", st.Rotation.Phase)
		}
	}
	t.Logf("rotate-root returned: %v", runErr)
	now := time.Now()
	for _, s := range servingSecrets() {
		chain, err := certs.ParseCertsPEM(s.Data["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(s.Data["ca.crt"])
		// As the apiserver verifies it: at its own now, no tolerance.
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving cert in %s/%s (not before %s) does not verify at the cluster's now %s: %v",
				ns, s.Name, chain[0].NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), err)
		}
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "ahead of the apiserver's") {
		t.Errorf("rotate-root error %v; want a refusal saying this machine's clock is ahead of the apiserver's", runErr)
	}
	st, err := store.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rotation.Phase != tresor.PhaseNone {
		t.Errorf("after rotate-root: phase %q; want no rotation started", st.Rotation.Phase)
	}
}
