package injector

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestDecideWrite(t *testing.T) {
	for _, tc := range []struct {
		name         string
		secretExists bool
		pod          podState
		deleting     bool
		pending      bool
		want         writeAction
	}{
		{name: "admitted here, pod stored, no Secret yet", pod: podExists, pending: true, want: writePending},
		{name: "admitted elsewhere (or before a restart), no Secret", pod: podExists, want: writeRepair},
		{name: "Secret exists (written by the admission, another replica, FSM)", secretExists: true, pod: podExists, pending: true, want: writeNothing},
		{name: "Secret exists, nothing pending", secretExists: true, pod: podExists, want: writeNothing},
		{name: "pod gone before the write", pod: podNotSeen, pending: true, want: writeNothing},
		{name: "pod seen deleted", pod: podDeleted, pending: true, want: writeNothing},
		{name: "pod being deleted", pod: podExists, deleting: true, pending: true, want: writeNothing},
		{name: "pod being deleted, nothing pending", pod: podExists, deleting: true, want: writeNothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideWrite(tc.secretExists, tc.pod, tc.deleting, tc.pending); got != tc.want {
				t.Errorf("decideWrite = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPendingSecretsExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewPendingSecrets(time.Minute)
	p.now = func() time.Time { return now }
	mut := &Mutation{CommonName: "cn-a"}
	p.add("app", "a", mut)
	now = now.Add(30 * time.Second)
	p.add("app", "b", &Mutation{CommonName: "cn-b"})
	keyA := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("a")}
	keyB := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("b")}

	if e, ok := p.get(keyA); !ok || e.commonName != "cn-a" || e.proxyUUID != "a" {
		t.Fatalf("get(a) = %+v, %v", e, ok)
	}
	now = now.Add(31 * time.Second) // a is 61 s old, b 31 s
	if p.has(keyA) {
		t.Error("an entry past its TTL is still served")
	}
	if !p.has(keyB) {
		t.Error("an entry within its TTL is not served")
	}
	if n := p.expire(); n != 1 || p.Len() != 1 {
		t.Errorf("expire dropped %d, %d left; want 1, 1", n, p.Len())
	}
	p.add("app", "c", &Mutation{CommonName: "cn-c"})
	now = now.Add(50 * time.Second) // b is 81 s old, c 50 s
	left := p.close()
	if len(left) != 1 || left[types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("c")}].commonName != "cn-c" || p.Len() != 0 {
		t.Errorf("close returned %+v and kept %d; want only c's record, none kept", left, p.Len())
	}
	if p.add("app", "d", &Mutation{}) || p.Len() != 0 {
		t.Error("a closed store took a record")
	}
	if d := NewPendingSecrets(0).ttl; d != DefaultOrphanGracePeriod {
		t.Errorf("default TTL %s, want %s", d, DefaultOrphanGracePeriod)
	}
}

func TestUUIDOfSecret(t *testing.T) {
	for name, want := range map[string]string{BootstrapSecretName("abc"): "abc", BootstrapSecretPrefix: "", "other": "", "x" + BootstrapSecretName("abc"): ""} {
		got, ok := uuidOfSecret(name)
		if got != want || ok != (want != "") {
			t.Errorf("uuidOfSecret(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}

func TestSecretWriterValidate(t *testing.T) {
	for _, w := range []SecretWriter{SecretWriterAdmission, SecretWriterController} {
		if err := w.Validate(); err != nil {
			t.Errorf("%s: %v", w, err)
		}
	}
	if err := SecretWriter("kubelet").Validate(); err == nil || !strings.Contains(err.Error(), `"admission" or "controller"`) {
		t.Errorf("kubelet: %v", err)
	}
}

// TestHandlerControllerWriter: with Options.Pending the admission issues no
// certificate and writes no Secret; it records what the Secret must hold
// (not for a dry run), and recognises its own reinvocation by that record.
func TestHandlerControllerWriter(t *testing.T) {
	f := newHandlerFixture(t, stubIssuer{}, nil)
	f.h.opts.Pending = NewPendingSecrets(0)

	_, resp := f.post(t, reviewBody(t, nil), "application/json")
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("not injected: %+v", resp)
	}
	if len(f.secrets) != 0 {
		t.Fatalf("the admission wrote %d Secrets", len(f.secrets))
	}
	if f.h.opts.Pending.Len() != 1 {
		t.Fatalf("%d pending Secrets, want 1", f.h.opts.Pending.Len())
	}
	var id string
	for k, e := range f.h.opts.Pending.entries {
		id = e.proxyUUID
		if k != (types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}) || e.commonName != CommonName(id, "", "app", defaultTrustDomain) {
			t.Errorf("pending %s = %+v", k, e)
		}
		if e.boot.NodeID != e.commonName || e.boot.RepoPort == 0 {
			t.Errorf("bootstrap config not recorded: %+v", e.boot)
		}
	}
	if !strings.Contains(string(resp.Patch), BootstrapSecretName(id)) {
		t.Errorf("patch does not mount %s: %s", BootstrapSecretName(id), resp.Patch)
	}

	_, resp = f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.DryRun = ptrBool(true) }), "application/json")
	if !resp.Allowed || len(resp.Patch) == 0 || f.h.opts.Pending.Len() != 1 {
		t.Fatalf("dry run: allowed %v, patch %d bytes, %d pending (want 1)", resp.Allowed, len(resp.Patch), f.h.opts.Pending.Len())
	}

	// The apiserver reinvokes us with the pod as we patched it.
	mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
	if err != nil {
		t.Fatal(err)
	}
	_, resp = f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw, _ = json.Marshal(mut.Pod) }), "application/json")
	if !resp.Allowed || len(resp.Patch) != 0 || f.h.opts.Pending.Len() != 1 || len(f.secrets) != 0 {
		t.Fatalf("reinvocation: allowed %v, patch %s, %d pending, %d Secrets; want no change", resp.Allowed, resp.Patch, f.h.opts.Pending.Len(), len(f.secrets))
	}

	// Once the writer has stopped (the server still drains), the admission
	// writes the Secret itself.
	f.h.opts.Pending.close()
	_, resp = f.post(t, reviewBody(t, nil), "application/json")
	if !resp.Allowed || len(resp.Patch) == 0 || len(f.secrets) != 1 {
		t.Fatalf("after the writer stopped: allowed %v, patch %d bytes, %d Secrets written; want the admission to write 1", resp.Allowed, len(resp.Patch), len(f.secrets))
	}
}
