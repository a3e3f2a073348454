package tresor

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestInspectRotationFields: the rotation keys of the CA Secret must agree
// with ca.crt before a server signs with it; each refusal names the key.
func TestInspectRotationFields(t *testing.T) {
	now := time.Now()
	good := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	next := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	other := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	both := append(certPEM(good), certPEM(next)...)
	base := func(extra map[string][]byte) map[string][]byte {
		d := map[string][]byte{KeyCABundle: both, KeyPrivateKey: keyPEM(t, good)}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	added := func(caPEM, nextKey []byte) map[string][]byte {
		return base(map[string][]byte{KeyCABundle: caPEM, KeyRotationPhase: []byte(PhaseNextRootAdded), KeyRotationNextCert: certPEM(next), KeyRotationNextKey: nextKey})
	}
	for _, tc := range []struct {
		name    string
		data    map[string][]byte
		wantErr string
	}{
		{"blank ca.crt", base(map[string][]byte{KeyCABundle: []byte("\n \n")}), `key "ca.crt" is missing or empty`},
		{"blank private.key", base(map[string][]byte{KeyPrivateKey: []byte("\n")}), `key "private.key" is missing or empty`},
		{"next root added", added(both, keyPEM(t, next)), ""},
		{"next root not in ca.crt", added(certPEM(good), keyPEM(t, next)), "phase NextRootAdded but rotation.next.crt is not in ca.crt"},
		{"next root with another key", added(both, keyPEM(t, other)), "rotation.next.crt/rotation.next.key: private key does not match CA certificate"},
		{"next root active", base(map[string][]byte{KeyRotationPhase: []byte(PhaseNextRootActive), KeyRotationPreviousCert: certPEM(next)}), ""},
		{"active without the previous root", base(map[string][]byte{KeyRotationPhase: []byte(PhaseNextRootActive)}), "rotation.previous.crt: no PEM certificate found"},
		{"two previous roots", base(map[string][]byte{KeyRotationPhase: []byte(PhaseNextRootActive), KeyRotationPreviousCert: both}), "rotation.previous.crt: want one certificate, found 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName}, Data: tc.data}
			_, err := Inspect(s, now)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestInspectManaged: only this project's managed-by value marks the CA
// Secret as one it may rotate on its own.
func TestInspectManaged(t *testing.T) {
	now := time.Now()
	good := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	for _, tc := range []struct {
		label string
		want  bool
	}{{ManagedByValue, true}, {"Helm", false}, {"", false}} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName, Labels: map[string]string{LabelManagedBy: tc.label}},
			Data: map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: keyPEM(t, good)}}
		st, err := Inspect(s, now)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rotation.Managed != tc.want {
			t.Errorf("managed-by %q: Managed = %v, want %v", tc.label, st.Rotation.Managed, tc.want)
		}
	}
}
