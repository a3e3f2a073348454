// Package servingcert manages the TLS serving certificate of one webhook: the
// request it is issued for, when it must be renewed, its storage in a Secret
// shared by every replica, and the in-memory copy served by the TLS listener.
//
// The decision code (Spec, Check, MergeBundles) is pure; Store and Source do
// the Kubernetes I/O.
package servingcert

import (
	"fmt"
	"net"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Secret keys, as FSM stores webhook serving certs.
const (
	KeyCA   = "ca.crt"
	KeyCert = "tls.crt"
	KeyKey  = "tls.key"
)

const (
	// DefaultValidity is FSM's webhook serving cert lifetime (87600h).
	DefaultValidity = 87600 * time.Hour
	// organization is the subject O of every serving cert.
	organization = "Flomesh Service Mesh"
)

// Spec describes one webhook's serving certificate.
type Spec struct {
	// SecretName holds the cert in Namespace (e.g. "mutating-webhook-cert-secret").
	SecretName string
	// Namespace is the fsm namespace: home of the Secret and the Service.
	Namespace string
	// ServiceName is the Service the apiserver calls (e.g. "fsm-injector").
	ServiceName string
	// URLHost is the --webhook-url-host value (DNS name or IP), added as a SAN.
	URLHost string
	// Validity of issued certs (default 87600h).
	Validity time.Duration
	// KeyAlgorithm of the serving key; empty: the provider's default.
	// Vault ignores it (its role decides).
	KeyAlgorithm certs.KeyAlgorithm
}

// Validate reports the first bad field, naming it and its value.
func (s Spec) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"SecretName", s.SecretName}, {"Namespace", s.Namespace}, {"ServiceName", s.ServiceName},
	} {
		if errs := validation.IsDNS1123Subdomain(f.value); len(errs) > 0 {
			return fmt.Errorf("serving cert: %s %q is invalid: %s", f.name, f.value, strings.Join(errs, "; "))
		}
	}
	if s.URLHost != "" && net.ParseIP(s.URLHost) == nil {
		if errs := validation.IsDNS1123Subdomain(s.URLHost); len(errs) > 0 {
			return fmt.Errorf("serving cert: URLHost %q is neither an IP nor a DNS name: %s", s.URLHost, strings.Join(errs, "; "))
		}
	}
	if s.Validity < 0 {
		return fmt.Errorf("serving cert: Validity %s must not be negative", s.Validity)
	}
	if err := s.KeyAlgorithm.Validate(); err != nil {
		return fmt.Errorf("serving cert: KeyAlgorithm: %w", err)
	}
	return nil
}

// CommonName is "<service>.<namespace>.svc", the name the apiserver verifies
// when it calls the Service.
func (s Spec) CommonName() string {
	return s.ServiceName + "." + s.Namespace + ".svc"
}

// ServerName is the TLS server name the apiserver uses: the URL host in URL
// mode, the Service DNS name otherwise.
func (s Spec) ServerName() string {
	if s.URLHost != "" {
		return s.URLHost
	}
	return s.CommonName()
}

func (s Spec) validity() time.Duration {
	if s.Validity == 0 {
		return DefaultValidity
	}
	return s.Validity
}

// DNSNames are the name the apiserver calls the Service by (the common
// name), plus URLHost when it is a DNS name. Only that one, as FSM v1.5.1
// asked: a Vault role or a cert-manager approver-policy written for FSM's
// requests (allowed_domains svc, cluster.local with subdomains) refuses the
// short names (fsm-injector, fsm-injector.fsm-system), and nothing calls a
// webhook by them.
func (s Spec) DNSNames() []string {
	names := []string{s.CommonName()}
	if s.URLHost != "" && net.ParseIP(s.URLHost) == nil && !contains(names, s.URLHost) {
		names = append(names, s.URLHost)
	}
	return names
}

// IPAddresses is URLHost when it is an IP.
func (s Spec) IPAddresses() []net.IP {
	if ip := net.ParseIP(s.URLHost); ip != nil {
		return []net.IP{ip}
	}
	return nil
}

// Request is what the issuer is asked for.
func (s Spec) Request() certs.Request {
	return certs.Request{
		CommonName:   s.CommonName(),
		DNSNames:     s.DNSNames(),
		IPAddresses:  s.IPAddresses(),
		Organization: organization,
		Validity:     s.validity(),
		Usage:        certs.UsageServer,
		KeyAlgorithm: s.KeyAlgorithm,
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
