package chart_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// podSpec is the Deployment fsm-webhooks' pod template.
func podSpec(t *testing.T, values string) corev1.PodTemplateSpec {
	t.Helper()
	var pod corev1.PodTemplateSpec
	tmpl := nested(t, mustFind(t, mustRender(t, values), "Deployment", "fsm-webhooks"), "spec", "template").(map[string]any)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// TestVaultSecretsMounted: fsm.vault.caSecret (a Vault behind a private CA,
// which FSM's chart has no way to trust) and fsm.vault.clientCertSecret (a
// Vault that requires client certificates, which FSM cannot reach) each
// mount only their keys of the Secret, read-only and as a directory (not
// subPath: the kubelet updates it, and serve re-reads the files), at the
// paths the flags name; the kubelet reads the Secrets, so the servers' RBAC
// is unchanged (providerValues' "vault-private-ca" and "vault-client-cert"
// in TestServerRBACIsWhatServeUses). Without the values, or with another
// provider, nothing is mounted.
func TestVaultSecretsMounted(t *testing.T) {
	type mount struct {
		volume, dir string
		secret      corev1.SecretVolumeSource
		args        []string
	}
	ca := func(key string) mount {
		return mount{"vault-ca", "/etc/fsm-webhooks/vault-ca",
			corev1.SecretVolumeSource{SecretName: "vault-ca", Items: []corev1.KeyToPath{{Key: key, Path: "ca.crt"}}},
			[]string{"--vault-ca-file=/etc/fsm-webhooks/vault-ca/ca.crt"}}
	}
	client := func(name, certKey, key string) mount {
		return mount{"vault-client-cert", "/etc/fsm-webhooks/vault-client-cert",
			corev1.SecretVolumeSource{SecretName: name, Items: []corev1.KeyToPath{{Key: certKey, Path: "tls.crt"}, {Key: key, Path: "tls.key"}}},
			[]string{"--vault-client-cert-file=/etc/fsm-webhooks/vault-client-cert/tls.crt", "--vault-client-key-file=/etc/fsm-webhooks/vault-client-cert/tls.key"}}
	}
	const vault = `fsm: {certificateProvider: {kind: vault}, vault: {host: vault.vault.svc, protocol: https, token: t, `
	for _, tc := range []struct {
		name, values string
		mounted      []mount
		absent       []string // volumes
	}{
		{"a CA Secret", providerValues["vault-private-ca"], []mount{ca("ca.pem")}, []string{"vault-client-cert"}},
		{"a client certificate Secret, of kubernetes.io/tls keys", providerValues["vault-client-cert"],
			[]mount{ca("ca.crt"), client("fsm-webhooks-vault-client", "tls.crt", "tls.key")}, nil},
		{"a client certificate Secret, of other keys, without a CA Secret", vault + `clientCertSecret: {name: vault-client, certKey: cert.pem, key: key.pem}}}`,
			[]mount{client("vault-client", "cert.pem", "key.pem")}, []string{"vault-ca"}},
		{"vault https without either", providerValues["vault"], nil, []string{"vault-ca", "vault-client-cert"}},
		{"tresor with both", "fsm: {vault: {protocol: https, caSecret: {name: vault-ca}, clientCertSecret: {name: vault-client}}}", nil, []string{"vault-ca", "vault-client-cert"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := podSpec(t, tc.values)
			c := pod.Spec.Containers[0]
			for _, m := range tc.mounted {
				for _, a := range m.args {
					if !slices.Contains(c.Args, a) {
						t.Errorf("args lack %s: %q", a, c.Args)
					}
				}
				i := slices.IndexFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == m.volume })
				if i < 0 {
					t.Fatalf("no %s volume mount: %v", m.volume, c.VolumeMounts)
				}
				if vm := c.VolumeMounts[i]; vm.MountPath != m.dir || !vm.ReadOnly || vm.SubPath != "" {
					t.Errorf("%s mount = %+v, want read-only at %s, no subPath", m.volume, vm, m.dir)
				}
				j := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.volume })
				if j < 0 {
					t.Fatalf("no %s volume: %v", m.volume, pod.Spec.Volumes)
				}
				if got := pod.Spec.Volumes[j].Secret; got == nil || got.SecretName != m.secret.SecretName || !slices.Equal(got.Items, m.secret.Items) || got.Optional != nil {
					t.Errorf("%s volume = %+v, want Secret %+v (required)", m.volume, pod.Spec.Volumes[j], m.secret)
				}
			}
			for _, v := range tc.absent {
				flag := map[string]string{"vault-ca": "--vault-ca-file", "vault-client-cert": "--vault-client-"}[v]
				if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, flag) }) ||
					slices.ContainsFunc(pod.Spec.Volumes, func(vol corev1.Volume) bool { return vol.Name == v }) {
					t.Errorf("%s passed or mounted: args %q, volumes %v", v, c.Args, pod.Spec.Volumes)
				}
			}
		})
	}
}

// TestVaultSecretsRefused: a caSecret or clientCertSecret the servers could
// not use is refused at render naming the value, as the binary refuses
// --vault-ca-file and --vault-client-cert-file.
func TestVaultSecretsRefused(t *testing.T) {
	const vault = `certificateProvider: {kind: vault}, vault: {host: vault.example, token: t, `
	for _, tc := range []struct{ values, want string }{
		// Over http the CA would go unused, and the token in clear.
		{`caSecret: {name: vault-ca}`, `fsm.vault.caSecret.name "vault-ca": the CA verifies Vault's https certificate, but fsm.vault.protocol is http`},
		{`protocol: https, caSecret: {name: vault-ca, key: ""}`, `fsm.vault.caSecret.key: required when fsm.vault.caSecret.name is set ("vault-ca")`},
		{`protocol: https, caSecret: {name: Vault_CA}`, "/fsm/vault/caSecret/name"},
		// Over http there is no TLS handshake to present it in.
		{`clientCertSecret: {name: vault-client}`, `fsm.vault.clientCertSecret.name "vault-client": the client certificate is presented to Vault's https listener, but fsm.vault.protocol is http`},
		{`protocol: https, clientCertSecret: {name: vault-client, certKey: ""}`, `fsm.vault.clientCertSecret.certKey and .key: both required when fsm.vault.clientCertSecret.name is set ("vault-client")`},
		{`protocol: https, clientCertSecret: {name: vault-client, key: ""}`, `fsm.vault.clientCertSecret.certKey and .key: both required when fsm.vault.clientCertSecret.name is set ("vault-client")`},
		{`protocol: https, clientCertSecret: {name: Vault_Client}`, "/fsm/vault/clientCertSecret/name"},
		{`protocol: https, clientCertSecret: {name: vault-client, key: "tls key"}`, "/fsm/vault/clientCertSecret/key"},
		{`protocol: https, clientCertSecret: {name: vault-client, cert: tls.crt}`, "/fsm/vault/clientCertSecret"},
	} {
		values := "fsm: {" + vault + tc.values + "}}"
		_, err := charttest.Render(ns, mustValues(t, values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("render %s: err = %v, want it to contain %q", values, err, tc.want)
		}
	}
}
