package main

import (
	"errors"
	"strings"
	"testing"
)

// TestVaultHostValidated: --vault-host (fsm.vault.host) is a host name
// ("host name of the Vault server (example: vault.contoso.com)", seeds
// fsm-certificate-management.md); the port and scheme have their own flags.
// A URL or host:port given there must stop startup with one line naming the
// flag and the value, as --webhook-url-host does (design.md: "A bad flag
// value stops startup with one clear line naming the flag; exit code 2").
func TestVaultHostValidated(t *testing.T) {
	for _, host := range []string{"https://vault.example.com", "vault.example.com:8200", "vault example"} {
		t.Run(host, func(t *testing.T) {
			o := parseOptions(t, []string{"--certificate-manager=vault", "--vault-token=t", "--vault-host=" + host}, nil)
			err := o.validate()
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--vault-host") || !strings.Contains(err.Error(), host) {
				t.Fatalf("validate() = %v; want a usage error naming --vault-host and %q", err, host)
			}
		})
	}
}

// A host name in any case, or an IP address, is a Vault host.
func TestVaultHostAccepted(t *testing.T) {
	for _, host := range []string{"vault.example.com", "Vault.Example.COM", "10.0.0.5", "fd00::5"} {
		o := parseOptions(t, []string{"--certificate-manager=vault", "--vault-token=t", "--vault-host=" + host}, nil)
		if err := o.validate(); err != nil {
			t.Errorf("--vault-host=%s: %v", host, err)
		}
	}
}
