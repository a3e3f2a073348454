package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// TestTokenRotatedInItsSecret: the token comes from the Secret
// fsm.vault.secret names. Rotated there (the old token revoked, a new one
// written), issuance goes on with the new token, without a restart.
func TestTokenRotatedInItsSecret(t *testing.T) {
	ctx := context.Background()
	srv, admin := devPKI(ctx, t)
	putIssuePolicy(ctx, t, admin)
	token := func() string {
		t.Helper()
		tok, err := admin.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"pki-issue"}, NoParent: true, TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Auth.ClientToken
	}
	tokA, tokB := token(), token()
	env := testenv.Start(t, testenv.Options{})
	ns := "fsm-system"
	secret := tokenSecret(ctx, t, env, ns, tokA)
	i := secretTokenIssuer(ctx, t, srv, env, ns, nil)
	req := certs.Request{CommonName: "p.sidecar.sa.bookstore.cluster.local", Validity: time.Hour, Usage: certs.UsageBoth}
	if _, err := i.Issue(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := admin.Auth().Token().RevokeTreeWithContext(ctx, tokA); err != nil {
		t.Fatal(err)
	}
	secret.Data["token"] = []byte(tokB)
	if _, err := env.Clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Issue(ctx, req); err != nil {
		t.Fatalf("after the token in Secret %s/vault-token was rotated: %v", ns, err)
	}
	// Revoked with nothing new in the Secret: Vault's denial stands.
	if err := admin.Auth().Token().RevokeTreeWithContext(ctx, tokB); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Issue(ctx, req); err == nil || !strings.Contains(err.Error(), "denied the token for pki/issue/flomesh (403 ") {
		t.Fatalf("with the Secret's token revoked: %v, want Vault's 403", err)
	}
}

// tokenSecret creates namespace ns and in it the Secret vault-token holding
// token under the key token.
func tokenSecret(ctx context.Context, t *testing.T, env *testenv.Env, ns, token string) *corev1.Secret {
	t.Helper()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vault-token", Namespace: ns}, Data: map[string][]byte{"token": []byte(token)}}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// secretTokenIssuer is an Issuer of srv that reads its token from
// tokenSecret's Secret in ns, without client retries, mod applied to its
// options.
func secretTokenIssuer(ctx context.Context, t *testing.T, srv *vaultdev.Server, env *testenv.Env, ns string, mod func(*Options)) *Issuer {
	t.Helper()
	zero := 0
	o := Options{Host: srv.Host, Port: srv.Port, Protocol: "http", Role: DefaultRole, MaxRetries: &zero,
		TokenSecretName: "vault-token", TokenSecretKey: "token", TokenSecretNamespace: ns, Secrets: env.Clientset}
	if mod != nil {
		mod(&o)
	}
	i, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return i
}
