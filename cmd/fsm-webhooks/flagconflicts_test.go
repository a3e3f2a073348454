package main

import (
	"errors"
	"strings"
	"testing"
)

// TestFlagErrorsBeforeTheCluster: values that can never work are usage
// errors (exit 2) naming the flag and the value, found before serve reaches
// the cluster. Each of these was accepted: the key pool's floor panicked in
// makechan (or allocated gigabytes) at start, pprof's listener took a port
// another listener then failed to bind (naming no flag), an object name
// Kubernetes can never store failed at the first write naming no flag
// (tresor's CA Secret) or was looked up for ever (cert-manager's CA Secret
// and issuer, the injector's probe namespace: /readyz/injector never passes).
func TestFlagErrorsBeforeTheCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"key pool floor beyond any memory", []string{"serve", "--key-pool-size=1000000000000000000"}, nil,
			"invalid value 1000000000000000000 for --key-pool-size: must be between 0 and 4096"},
		{"key pool floor from env", []string{"serve"}, map[string]string{"FSM_KEY_POOL_SIZE": "100000000"},
			"invalid value 100000000 for --key-pool-size: must be between 0 and 4096"},
		{"pprof on the health probe port", []string{"serve", "--pprof-bind-address=127.0.0.1:8081"}, nil,
			`invalid value "127.0.0.1:8081" for --pprof-bind-address: port 8081 is --health-probe-bind-address's`},
		{"pprof on the injector's port", []string{"serve", "--pprof-bind-address=127.0.0.1:9090"}, nil,
			`invalid value "127.0.0.1:9090" for --pprof-bind-address: port 9090 is --injector-port's`},
		{"pprof on a moved metrics port", []string{"serve", "--metrics-bind-address=:9100", "--pprof-bind-address=localhost:9100"}, nil,
			`invalid value "localhost:9100" for --pprof-bind-address: port 9100 is --metrics-bind-address's`},
		{"CA Secret name", []string{"serve", "--ca-bundle-secret-name=fsm_ca_bundle"}, nil,
			`invalid value "fsm_ca_bundle" for --ca-bundle-secret-name`},
		{"Vault token Secret name", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token-secret-name=Vault-Token", "--vault-token-secret-key=token"}, nil,
			`invalid value "Vault-Token" for --vault-token-secret-name`},
		{"cert-manager issuer name", []string{"serve", "--certificate-manager=cert-manager", "--cert-manager-issuer-name=FSM-CA"}, nil,
			`invalid value "FSM-CA" for --cert-manager-issuer-name`},
		{"injector probe namespace", []string{"serve", "--injector-probe-namespace=Mesh_Probe"}, nil,
			`invalid value "Mesh_Probe" for --injector-probe-namespace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A value let through fails fast on the missing config, never
			// reaching (or waiting for) a cluster.
			t.Setenv("KUBECONFIG", t.TempDir()+"/none")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cmd := newRootCommand()
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v (%T) is not a usage error (exit 2)", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line containing %q", err, tc.want)
			}
		})
	}
}
