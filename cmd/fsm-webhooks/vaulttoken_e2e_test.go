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
// renewable token with a TTL alive. The token here lives 8 s unless renewed;
// twice that later it is still valid, and serve still answers on its
// Vault-issued serving certificate.
func TestServeRenewsVaultToken(t *testing.T) {
	const ns = "fsm-system"
	const ttl = 8 * time.Second
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
		Policies: []string{"pki-issue"}, NoParent: true, TTL: "8s", ExplicitMaxTTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	token, start := tok.Auth.ClientToken, time.Now()
	o, done := serveValidator(ctx, t, env.Config, ns, func(o *options) {
		o.certificateManager = "vault"
		o.vaultHost, o.vaultPort, o.vaultProtocol, o.vaultToken = srv.Host, srv.Port, "http", token
	})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", o.validatorPort, fsmnames.ValidatorPath)
	answers := waitAnswers(t, hc, url, done, "the validator")
	time.Sleep(time.Until(start.Add(2 * ttl)))
	look, err := admin.Auth().Token().LookupWithContext(ctx, token)
	if err != nil {
		t.Fatalf("%s after serve started with a %s token: %v (not renewed)", 2*ttl, ttl, err)
	}
	if left, err := look.TokenTTL(); err != nil || left <= 0 {
		t.Fatalf("token TTL %s (%v) %s after start, want it renewed", left, err, 2*ttl)
	}
	if err := answers(); err != nil {
		t.Fatal(err)
	}
}
