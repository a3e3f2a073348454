package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestServeRenewsVaultToken: `serve --certificate-manager=vault` keeps a
// renewable token with a TTL alive. The token here lives 15 s unless
// renewed; a third of that past its end it is still valid, and serve still
// answers on its Vault-issued serving certificate. It stays alive through
// the shutdown drain too: admissions are answered (and certificates issued)
// until serve returns, not only until SIGTERM.
func TestServeRenewsVaultToken(t *testing.T) {
	const ns = "fsm-system"
	// The keeper renews at two thirds of each lease: a third (5 s) is how
	// late a renewal may come, under a serve starting up beside it on a
	// loaded machine (8 s leases left 2.7 s), and how long past the first
	// lease the token is judged.
	const ttl = 15 * time.Second
	const judged = ttl + ttl/3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := vaultdev.New(t)
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: "flomesh", MaxTTL: 87600 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}

	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Created last: the apiserver's start must not eat into its TTL.
	if err := admin.Sys().PutPolicyWithContext(ctx, "pki-issue", `path "pki/issue/*" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies: []string{"pki-issue"}, NoParent: true, TTL: fmt.Sprintf("%ds", int(ttl/time.Second)), ExplicitMaxTTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	token, start := tok.Auth.ClientToken, time.Now()
	// Longer than a lease and the lateness judged: a keeper stopped at
	// SIGTERM lets the token lapse while serve still drains.
	const drain = judged + 5*time.Second
	serveCtx, sigterm := context.WithCancel(ctx)
	o, done := serveHooks(serveCtx, t, env.Config, ns, []string{hookValidator}, func(o *options, sf *serveFlags) {
		o.certificateManager = "vault"
		o.vaultHost, o.vaultPort, o.vaultProtocol, o.vaultToken = srv.Host, srv.Port, "http", token
		sf.shutdownDrain = drain
	})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath)
	answers := waitAnswers(t, hc, url, done, "the validator")
	alive := func(when string) {
		t.Helper()
		look, err := admin.Auth().Token().LookupWithContext(ctx, token)
		if err != nil {
			t.Fatalf("%s: %v (not renewed)", when, err)
		}
		if left, err := look.TokenTTL(); err != nil || left <= 0 {
			t.Fatalf("%s: token TTL %s (%v), want it renewed", when, left, err)
		}
	}
	time.Sleep(time.Until(start.Add(judged)))
	alive(fmt.Sprintf("%s after serve started with a %s token", judged, ttl))
	if err := answers(); err != nil {
		t.Fatal(err)
	}

	sigterm()
	stopped := time.Now()
	time.Sleep(judged)
	select {
	case err := <-done:
		t.Fatalf("serve returned %s into a %s drain: %v", time.Since(stopped), drain, err)
	default:
	}
	alive(fmt.Sprintf("%s into serve's shutdown drain", judged))
}
