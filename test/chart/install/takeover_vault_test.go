package install_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/vaultdev"
)

// vaultRole is the PKI role FSM's Vault set-up creates and fsm.vault.role
// names (the chart's default), with FSM's documented max_ttl.
const vaultRole = "flomesh"

// vaultCA is FSM's mesh CA with fsm.certificateProvider.kind=vault: a real
// Vault dev server set up as FSM's documentation says (test/vaultdev). FSM
// issues its webhook serving certs from the role and writes the issuing CA
// as its configurations' caBundle; the root key never leaves Vault, so FSM
// keeps no fsm-ca-bundle.
type vaultCA struct {
	srv  *vaultdev.Server
	root []byte
}

func newVaultCA(ctx context.Context, t *testing.T) *vaultCA {
	t.Helper()
	srv := vaultdev.New(t)
	// Vault generates the key of every certificate pki/issue returns. Its
	// default, RSA-2048 (FSM's documented role), takes Vault most of a core
	// at the 10 pods/s these tests create, which a 2-core machine running
	// other test packages does not always have: one run saw three issues
	// outlast the injector's 15 s and fail their pod creates, and others
	// handed to the Secret controller. What is tested here is the takeover,
	// so the role's keys are P-256; certs/vault tests the RSA default.
	if err := srv.SetupPKI(ctx, "pki", vaultdev.Role{Name: vaultRole, MaxTTL: 24 * time.Hour, KeyType: "ec", KeyBits: 256}); err != nil {
		t.Fatal(err)
	}
	v := &vaultCA{srv: srv}
	v.root, _ = v.issue(t, "fsm-ca-probe")
	return v
}

// issue asks the role for a cert as FSM's Vault provider does (pki/issue)
// and returns the issuing CA and the key pair.
func (v *vaultCA) issue(t *testing.T, commonName string) (issuingCA []byte, pair tls.Certificate) {
	t.Helper()
	c, err := v.srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Logical().Write("pki/issue/"+vaultRole, map[string]any{"common_name": commonName, "ttl": "24h"})
	if err != nil {
		t.Fatalf("vault pki/issue/%s %s: %v", vaultRole, commonName, err)
	}
	field := func(k string) string {
		f, _ := s.Data[k].(string)
		if f == "" {
			t.Fatalf("vault pki/issue/%s: no %s in %v", vaultRole, k, s.Data)
		}
		return f
	}
	pair, err = tls.X509KeyPair([]byte(field("certificate")), []byte(field("private_key")))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.TrimSpace(field("issuing_ca")) + "\n"), pair
}

func (v *vaultCA) bundle() []byte { return v.root }

func (v *vaultCA) secretData() map[string][]byte { return nil }

func (v *vaultCA) serving(t *testing.T, dnsName string) tls.Certificate {
	t.Helper()
	_, pair := v.issue(t, dnsName)
	return pair
}

// values are FSM's Vault settings as its users set them
// (fsm-certificate-management.md): the chart renders the token into the
// Secret fsm-vault-token and points serve at it.
func (v *vaultCA) values() map[string]any {
	return map[string]any{
		"certificateProvider": map[string]any{"kind": "vault"},
		"vault":               map[string]any{"host": v.srv.Host, "port": int64(v.srv.Port), "protocol": "http", "token": v.srv.Token, "role": vaultRole},
	}
}

// checkServesFSMRoot: after the takeover our injector's serving cert
// chains to FSM's root (tresor's, or Vault's CA) and the caBundle reconciler
// kept that root in FSM's configuration, which now calls ours.
func checkServesFSMRoot(ctx context.Context, t *testing.T, c client.Client, root meshCA, proc *serveProc) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(root.bundle()) {
		t.Fatalf("FSM's root is not PEM: %q", root.bundle())
	}
	dnsName := "fsm-injector." + ns + ".svc"
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proc.injector), &tls.Config{RootCAs: roots, ServerName: dnsName})
	if err != nil {
		t.Fatalf("our injector's serving cert for %s against FSM's root: %v", dnsName, err)
	}
	_ = conn.Close()
	var m admv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &m); err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Webhooks {
		if !bytes.Contains(w.ClientConfig.CABundle, bytes.TrimSpace(root.bundle())) {
			t.Errorf("%s webhook %s: caBundle does not hold FSM's root after the takeover:\n%s", mwcName, w.Name, w.ClientConfig.CABundle)
		}
	}
}

// withCA adds the provider's fsm.* values to each step's.
func withCA(steps []map[string]any, ca meshCA) []map[string]any {
	out := make([]map[string]any, len(steps))
	for i, step := range steps {
		fsm, _ := step["fsm"].(map[string]any)
		fsm = maps.Clone(fsm)
		if fsm == nil {
			fsm = map[string]any{}
		}
		maps.Copy(fsm, ca.values())
		out[i] = maps.Clone(step)
		out[i]["fsm"] = fsm
	}
	return out
}
