package vault

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// domainRole is the part of a Vault PKI role that decides which names
// pki/issue/<role> accepts: allowed_domains with allow_subdomains and
// allow_bare_domains (allow_any_name false), as Vault checks the
// common_name and every alt_names entry.
type domainRole struct {
	allowedDomains []string
}

func (r domainRole) allows(name string) bool {
	for _, d := range r.allowedDomains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

// roleVault is a PKI mount "pki" with one root (an old Vault: no
// multi-issuer API) and a role "flomesh" that checks names as Vault does.
// It records every pki/issue request body.
type roleVault struct {
	srv  *httptest.Server
	ca   *certs.Authority
	role domainRole

	mu   sync.Mutex
	sent []map[string]any
}

func newRoleVault(t *testing.T, role domainRole) *roleVault {
	t.Helper()
	ca, err := certs.NewRootAuthority(certs.RSA2048, 20*365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := &roleVault{ca: ca, role: role}
	caPEM := string(certs.EncodeCertsPEM(ca.Cert))
	reply := func(w http.ResponseWriter, code int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/pki/cert/ca":
			reply(w, 200, map[string]any{"data": map[string]any{"certificate": caPEM}})
		case strings.HasPrefix(r.URL.Path, "/v1/pki/issuers"):
			w.WriteHeader(http.StatusNotFound) // Vault before 1.11
		case r.URL.Path == "/v1/pki/issue/"+DefaultRole && (r.Method == http.MethodPut || r.Method == http.MethodPost):
			var data map[string]any
			if err := json.NewDecoder(r.Body).Decode(&data); err != nil {
				reply(w, 400, map[string]any{"errors": []string{err.Error()}})
				return
			}
			v.mu.Lock()
			v.sent = append(v.sent, data)
			v.mu.Unlock()
			cn, _ := data["common_name"].(string)
			if !v.role.allows(cn) {
				reply(w, 400, map[string]any{"errors": []string{fmt.Sprintf("common name %s not allowed by this role", cn)}})
				return
			}
			names := []string{cn}
			if alt, _ := data["alt_names"].(string); alt != "" {
				for _, n := range strings.Split(alt, ",") {
					if !v.role.allows(n) {
						reply(w, 400, map[string]any{"errors": []string{fmt.Sprintf("subject alternate name %s not allowed by this role", n)}})
						return
					}
					names = append(names, n)
				}
			}
			ttl := time.Hour
			if s, _ := data["ttl"].(string); s != "" {
				if d, err := time.ParseDuration(s); err == nil && d > 0 {
					ttl = d
				}
			}
			key, err := certs.GenerateKey(certs.RSA2048)
			if err != nil {
				reply(w, 500, map[string]any{"errors": []string{err.Error()}})
				return
			}
			leaf, err := v.ca.Sign(certs.Request{CommonName: cn, DNSNames: names, Validity: ttl, Usage: certs.UsageBoth}, key.Public(), time.Now())
			if err != nil {
				reply(w, 500, map[string]any{"errors": []string{err.Error()}})
				return
			}
			keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))})
			reply(w, 200, map[string]any{"data": map[string]any{
				"certificate":      string(certs.EncodeCertsPEM(leaf)),
				"private_key":      string(keyPEM),
				"private_key_type": "rsa",
				"issuing_ca":       caPEM,
				"ca_chain":         []string{caPEM},
				"serial_number":    leaf.SerialNumber.String(),
				"expiration":       leaf.NotAfter.Unix(),
			}})
		default:
			reply(w, 404, map[string]any{"errors": []string{}})
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *roleVault) issuer(t *testing.T) *Issuer {
	t.Helper()
	u, _ := url.Parse(v.srv.URL)
	port, _ := strconv.Atoi(u.Port())
	zero := 0
	i, err := New(context.Background(), Options{Host: u.Hostname(), Port: port, Protocol: "http", Role: DefaultRole, Token: "t", MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestServingCertNamesWithinFSMRole: FSM v1.5.1 asks pki/issue/<role>
// for a webhook serving certificate with common_name "<svc>.<ns>.svc" and
// ttl only (pkg/webhook/server.go 86-89, pkg/certificate/providers/vault/
// tools.go 18-23): no alt_names. A role restricted with allowed_domains
// (here: svc, cluster.local and init-cert, the names FSM's controller,
// webhooks and CA probe use, with allow_subdomains and allow_bare_domains)
// accepted every FSM request and must accept ours: servingcert.Spec.DNSNames
// once added alt_names "<svc>" and "<svc>.<ns>", which such a role refused,
// so no webhook got a serving certificate after the switch.
func TestServingCertNamesWithinFSMRole(t *testing.T) {
	v := newRoleVault(t, domainRole{allowedDomains: []string{"svc", "cluster.local", "init-cert"}})
	i := v.issuer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// What FSM v1.5.1 sent for its injector's serving certificate is
	// accepted by this role.
	fsmLike := certs.Request{CommonName: "fsm-injector.fsm-system.svc", Validity: 87600 * time.Hour, Usage: certs.UsageServer}
	if _, err := i.Issue(ctx, fsmLike); err != nil {
		t.Fatalf("the role refuses FSM's own request (fake Vault broken?): %v", err)
	}

	spec := servingcert.Spec{SecretName: "mutating-webhook-cert-secret", Namespace: "fsm-system", ServiceName: "fsm-injector"}
	c, err := i.Issue(ctx, spec.Request())
	if err != nil {
		v.mu.Lock()
		last := v.sent[len(v.sent)-1]
		v.mu.Unlock()
		t.Fatalf("a Vault role that accepted every FSM v1.5.1 request refuses our serving certificate: %v\n(sent common_name=%v alt_names=%v)", err, last["common_name"], last["alt_names"])
	}
	leaf, _ := certs.ParseCertsPEM(c.CertPEM)
	if err := leaf[0].VerifyHostname(spec.CommonName()); err != nil {
		t.Errorf("serving certificate does not cover %s, the name the apiserver calls: %v", spec.CommonName(), err)
	}
}
