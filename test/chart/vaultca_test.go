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

// TestVaultCASecretMounted: fsm.vault.caSecret (a Vault behind a private
// CA, which FSM's chart has no way to trust) mounts only that key of the
// Secret, read-only, at the path --vault-ca-file names; the kubelet reads
// the Secret, so the servers' RBAC is unchanged (providerValues'
// "vault-private-ca" in TestServerRBACIsWhatServeUses).
func TestVaultCASecretMounted(t *testing.T) {
	pod := podSpec(t, providerValues["vault-private-ca"])
	c := pod.Spec.Containers[0]
	if !slices.Contains(c.Args, "--vault-ca-file=/etc/fsm-webhooks/vault-ca/ca.crt") {
		t.Errorf("args lack --vault-ca-file: %q", c.Args)
	}
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "vault-ca" })
	if i < 0 {
		t.Fatalf("no vault-ca volume mount: %v", c.VolumeMounts)
	}
	if m := c.VolumeMounts[i]; m.MountPath != "/etc/fsm-webhooks/vault-ca" || !m.ReadOnly || m.SubPath != "" {
		t.Errorf("vault-ca mount = %+v, want read-only at /etc/fsm-webhooks/vault-ca, no subPath", m)
	}
	j := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "vault-ca" })
	if j < 0 {
		t.Fatalf("no vault-ca volume: %v", pod.Spec.Volumes)
	}
	want := corev1.SecretVolumeSource{SecretName: "vault-ca", Items: []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.crt"}}}
	if got := pod.Spec.Volumes[j].Secret; got == nil || got.SecretName != want.SecretName || !slices.Equal(got.Items, want.Items) || got.Optional != nil {
		t.Errorf("vault-ca volume = %+v, want Secret %+v (required)", pod.Spec.Volumes[j], want)
	}

	// Without the value, or with another provider, nothing is mounted.
	for name, values := range map[string]string{
		"vault https without caSecret": providerValues["vault"],
		"tresor with caSecret":         "fsm: {vault: {protocol: https, caSecret: {name: vault-ca}}}",
	} {
		pod := podSpec(t, values)
		c := pod.Spec.Containers[0]
		if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--vault-ca-file") }) ||
			slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "vault-ca" }) {
			t.Errorf("%s: vault CA passed or mounted: args %q, volumes %v", name, c.Args, pod.Spec.Volumes)
		}
	}
}

// TestVaultCASecretRefused: a caSecret the servers could not use is refused
// at render naming the value, as the binary refuses --vault-ca-file.
func TestVaultCASecretRefused(t *testing.T) {
	const vault = `certificateProvider: {kind: vault}, vault: {host: vault.example, token: t, `
	for _, tc := range []struct{ values, want string }{
		// Over http the CA would go unused, and the token in clear.
		{`caSecret: {name: vault-ca}`, `fsm.vault.caSecret.name "vault-ca": the CA verifies Vault's https certificate, but fsm.vault.protocol is http`},
		{`protocol: https, caSecret: {name: vault-ca, key: ""}`, `fsm.vault.caSecret.key: required when fsm.vault.caSecret.name is set ("vault-ca")`},
		{`protocol: https, caSecret: {name: Vault_CA}`, "/fsm/vault/caSecret/name"},
	} {
		values := "fsm: {" + vault + tc.values + "}}"
		_, err := charttest.Render(ns, mustValues(t, values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("render %s: err = %v, want it to contain %q", values, err, tc.want)
		}
	}
}
