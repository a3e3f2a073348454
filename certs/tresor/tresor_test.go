package tresor

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// badSecrets are CA Secrets that must stop start-up with their message and
// stay byte-identical.
func badSecrets(t *testing.T) []struct {
	name    string
	data    map[string][]byte
	wantErr string
} {
	now := time.Now()
	good := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	other := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	expired := mustRoot(t, certs.ECDSAP256, time.Hour, now.Add(-3*time.Hour))
	leafKey, _ := certs.GenerateKey(certs.ECDSAP256)
	leaf, err := good.Sign(certs.Request{CommonName: "leaf", Validity: time.Hour, Usage: certs.UsageServer}, leafKey.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name    string
		data    map[string][]byte
		wantErr string
	}{
		{"ca.crt missing", map[string][]byte{KeyPrivateKey: keyPEM(t, good)}, `key "ca.crt" is missing or empty`},
		{"ca.crt not PEM", map[string][]byte{KeyCABundle: []byte("not a certificate"), KeyPrivateKey: keyPEM(t, good)}, "ca.crt: no PEM certificate found"},
		{"private.key missing", map[string][]byte{KeyCABundle: certPEM(good)}, `key "private.key" is missing or empty`},
		{"private.key garbage", map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, "private.key: parsing PRIVATE KEY PEM block"},
		{"key of another root", map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: keyPEM(t, other)}, "private.key does not match any of the 1 certificate(s) in ca.crt"},
		{"expired root", map[string][]byte{KeyCABundle: certPEM(expired), KeyPrivateKey: keyPEM(t, expired)}, `the signing root "fsm-ca.flomesh.io" (serial`},
		{"not a CA", map[string][]byte{KeyCABundle: certs.EncodeCertsPEM(leaf), KeyPrivateKey: mustKeyPEM(t, leafKey)}, `certificate "leaf" is not a CA`},
		{"unknown phase", map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: keyPEM(t, good), KeyRotationPhase: []byte("Halfway")}, `rotation.phase: "Halfway" is not a phase`},
		{"phase without next root", map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: keyPEM(t, good), KeyRotationPhase: []byte(PhaseNextRootAdded)}, "rotation.next.crt: no PEM certificate found"},
	}
}

func TestInspectRejectsMalformedSecrets(t *testing.T) {
	for _, tc := range badSecrets(t) {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName}, Data: tc.data}
			_, err := Inspect(s, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "CA Secret fsm-system/"+fsmnames.CABundleSecretName+" is invalid") {
				t.Fatalf("err = %v, want it to name the Secret and contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestInspectShowsNoKeyMaterial: the CA Secret holds the root's key, and
// Inspect's error reaches serve's log and exit, `certs status` and
// `certs rotate-root`. A value under a key that holds a short text (the
// phase, a time) is quoted so a typo can be seen; anything else there,
// such as a key written under the wrong name, is described, never shown.
func TestInspectShowsNoKeyMaterial(t *testing.T) {
	now := time.Now()
	good := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	secretKey := keyPEM(t, good)
	body := strings.Split(string(secretKey), "\n")[1] // a line of the key's base64
	for _, key := range []string{KeyRotationPhase, KeyRotationStarted, KeyRotationActivated, KeyRotationCompleted} {
		t.Run(key, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName},
				Data: map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: secretKey, key: secretKey}}
			_, err := Inspect(s, now)
			if err == nil {
				t.Fatal("Inspect accepted a key PEM as " + key)
			}
			msg := err.Error()
			if strings.Contains(msg, body) || strings.Contains(msg, body[:16]) || strings.Contains(msg, "PRIVATE KEY") {
				t.Fatalf("the error shows the key written under %s: %s", key, msg)
			}
			if want := fmt.Sprintf("%s: a value of %d bytes", key, len(secretKey)); !strings.Contains(msg, want) {
				t.Fatalf("err = %s, want it to contain %q", msg, want)
			}
		})
	}
	// A short value is still shown as written.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName},
		Data: map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: secretKey, KeyRotationStarted: []byte("2026-13-01")}}
	if _, err := Inspect(s, now); err == nil || !strings.Contains(err.Error(), `rotation.started: "2026-13-01" is not an RFC 3339 time`) {
		t.Fatalf("err = %v, want the short value shown", err)
	}
}

func TestNewerVersion(t *testing.T) {
	for _, tc := range []struct {
		cand, cur string
		want      bool
	}{
		{"10", "9", true}, {"9", "10", false}, {"10", "10", false}, {"abc", "10", true}, {"", "", false},
	} {
		if got := newerVersion(tc.cand, tc.cur); got != tc.want {
			t.Errorf("newerVersion(%q, %q) = %v, want %v", tc.cand, tc.cur, got, tc.want)
		}
	}
}

// TestTresor runs every apiserver case against one envtest apiserver.
func TestTresor(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	cs := env.Clientset

	t.Run("replicas starting together converge on one CA", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		const replicas = 3
		issuers := make([]*Issuer, replicas)
		errs := make([]error, replicas)
		var start, wg sync.WaitGroup
		start.Add(1)
		for n := range replicas {
			wg.Go(func() {
				start.Wait()
				issuers[n], errs[n] = New(ctx, Options{Store: Store{Client: cs, Namespace: ns}, Keys: ecdsaKeys(t, ctx)})
			})
		}
		start.Done()
		wg.Wait()
		for n, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: %v", n, err)
			}
		}
		list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 || list.Items[0].Name != DefaultSecretName {
			t.Fatalf("want exactly one Secret %s, got %d", DefaultSecretName, len(list.Items))
		}
		sec := list.Items[0]
		if sec.Labels[LabelManagedBy] != ManagedByValue || sec.Type != corev1.SecretTypeOpaque {
			t.Errorf("labels %v type %s", sec.Labels, sec.Type)
		}
		root := issuers[0].State().Authority.Cert
		for n, i := range issuers {
			if !i.State().Authority.Cert.Equal(root) {
				t.Fatalf("replica %d uses a different root", n)
			}
		}
		checkRoot(t, root, sec)
		for n, i := range issuers {
			issueAndVerify(t, i, fmt.Sprintf("replica-%d.bookstore.cluster.local", n), certs.UsageBoth, certs.ECDSAP256, root)
		}
	})

	t.Run("malformed Secret is reported and left byte-identical", func(t *testing.T) {
		for _, tc := range badSecrets(t) {
			t.Run(tc.name, func(t *testing.T) {
				ns := namespace(t, cs)
				ctx := testCtx(t)
				before, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: DefaultSecretName, Namespace: ns, Labels: map[string]string{LabelManagedBy: ManagedByValue}},
					Data:       tc.data,
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				_, err = New(ctx, Options{Store: Store{Client: cs, Namespace: ns}, Keys: ecdsaKeys(t, ctx)})
				want := fmt.Sprintf("CA Secret %s/%s is invalid: ", ns, DefaultSecretName)
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New err = %v, want %q and %q", err, want, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "tresor: load root CA: ") {
					t.Errorf("error does not name the provider: %v", err)
				}
				s := Store{Client: cs, Namespace: ns}
				if _, err := s.AddNextRoot(ctx); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("AddNextRoot on a malformed Secret: %v", err)
				}
				after, err := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if after.ResourceVersion != before.ResourceVersion || !reflect.DeepEqual(after.Data, before.Data) {
					t.Fatal("the malformed Secret was modified")
				}
			})
		}
	})

	t.Run("bring-your-own root is used and never rewritten", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		byo := mustRoot(t, certs.ECDSAP384, 48*time.Hour, time.Now())
		before, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "my-root", Namespace: ns},
			Data:       map[string][]byte{KeyCABundle: certPEM(byo), KeyPrivateKey: keyPEM(t, byo)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		i, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, Name: "my-root"}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		if i.State().Rotation.Managed {
			t.Fatal("a Secret without our label is reported as managed")
		}
		bundle, _ := i.CABundle(ctx)
		if string(bundle) != string(certPEM(byo)) {
			t.Fatal("CABundle is not the BYO root")
		}
		issueAndVerify(t, i, "byo.bookstore.svc", certs.UsageServer, certs.ECDSAP256, byo.Cert)
		for name, step := range map[string]func(context.Context) (RotationStatus, error){
			"AddNextRoot": i.AddNextRoot, "ActivateNextRoot": i.ActivateNextRoot, "DropPreviousRoot": i.DropPreviousRoot,
		} {
			if _, err := step(ctx); err == nil || !strings.Contains(err.Error(), "is not managed by fsm-webhooks") {
				t.Errorf("%s on a BYO root: err = %v", name, err)
			}
		}
		after, err := cs.CoreV1().Secrets(ns).Get(ctx, "my-root", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion || !reflect.DeepEqual(after.Data, before.Data) || len(after.Labels) != 0 {
			t.Fatal("the BYO Secret was modified")
		}
	})

	t.Run("root rotation is idempotent, resumable and followed by every replica", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		a, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		changed := make(chan struct{}, 1)
		defer b.OnBundleChange(notify(changed))()
		aChanged := make(chan struct{}, 1)
		defer a.OnBundleChange(notify(aChanged))()
		oldRoot := a.State().Authority.Cert
		oldLeaf := issueAndVerify(t, a, "old.bookstore.svc", certs.UsageServer, certs.ECDSAP256, oldRoot)
		store := Store{Client: cs, Namespace: ns}

		if _, err := store.ActivateNextRoot(ctx); err == nil || !strings.Contains(err.Error(), "no root rotation in progress") {
			t.Fatalf("ActivateNextRoot before AddNextRoot: %v", err)
		}
		if _, err := store.DropPreviousRoot(ctx); err == nil || !strings.Contains(err.Error(), "no root rotation in progress") {
			t.Fatalf("DropPreviousRoot before AddNextRoot: %v", err)
		}

		// Phase 1, run by two replicas at once: one update wins, the other is a no-op.
		var wg sync.WaitGroup
		var st1, st2 RotationStatus
		var e1, e2 error
		wg.Go(func() { st1, e1 = a.AddNextRoot(ctx) })
		wg.Go(func() { st2, e2 = store.AddNextRoot(ctx) })
		wg.Wait()
		if e1 != nil || e2 != nil {
			t.Fatalf("AddNextRoot: %v, %v", e1, e2)
		}
		if st1.Phase != PhaseNextRootAdded || st2.Phase != PhaseNextRootAdded || !st1.Next.Equal(st2.Next) {
			t.Fatalf("concurrent AddNextRoot disagree: %s/%s", st1.Phase, st2.Phase)
		}
		newRoot := st1.Next
		if alg, _ := certs.AlgorithmOf(newRoot.PublicKey); alg != certs.ECDSAP256 {
			t.Errorf("next root key = %s, want the configured ECDSAP256", alg)
		}
		waitFor(t, changed, func() bool { return b.State().Bundle.Len() == 2 })
		if !a.State().Authority.Cert.Equal(oldRoot) || !b.State().Authority.Cert.Equal(oldRoot) {
			t.Fatal("phase 1 must keep signing with the old root")
		}
		issueAndVerify(t, b, "p1.bookstore.svc", certs.UsageServer, certs.ECDSAP256, oldRoot)
		assertFSMSigner(t, cs, ns, oldRoot)
		assertNoop(t, cs, ns, func() error { _, err := store.AddNextRoot(ctx); return err })
		if _, err := store.DropPreviousRoot(ctx); err == nil || !strings.Contains(err.Error(), "not active yet") {
			t.Fatalf("DropPreviousRoot in phase 1: %v", err)
		}

		// Phase 2.
		st, err := store.ActivateNextRoot(ctx)
		if err != nil || st.Phase != PhaseNextRootActive || !st.Active.Equal(newRoot) || !st.Previous.Equal(oldRoot) {
			t.Fatalf("ActivateNextRoot = %+v, %v", st.Phase, err)
		}
		waitFor(t, changed, func() bool { return b.State().Authority.Cert.Equal(newRoot) })
		newLeaf := issueAndVerify(t, b, "p2.bookstore.svc", certs.UsageServer, certs.ECDSAP256, newRoot)
		assertFSMSigner(t, cs, ns, newRoot)
		if err := b.State().Bundle.Verify(oldLeaf); err != nil {
			t.Fatalf("a leaf of the old root must still verify in phase 2: %v", err)
		}
		assertNoop(t, cs, ns, func() error { _, err := store.ActivateNextRoot(ctx); return err })
		assertNoop(t, cs, ns, func() error { _, err := store.AddNextRoot(ctx); return err })
		sec, _ := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
		if string(sec.Data[KeyExpiration]) != newRoot.NotAfter.UTC().Format(ExpirationLayout) {
			t.Errorf("expiration = %s, want the new root's", sec.Data[KeyExpiration])
		}

		// Phase 3.
		st, err = store.DropPreviousRoot(ctx)
		if err != nil || st.Phase != PhaseComplete || len(st.Trusted) != 1 || !st.Trusted[0].Equal(newRoot) {
			t.Fatalf("DropPreviousRoot = %+v, %v", st, err)
		}
		waitFor(t, changed, func() bool { return b.State().Bundle.Len() == 1 })
		assertFSMSigner(t, cs, ns, newRoot)
		if err := b.State().Bundle.Verify(oldLeaf); err == nil {
			t.Fatal("a leaf of the dropped root still verifies")
		}
		if err := b.State().Bundle.Verify(newLeaf); err != nil {
			t.Fatal(err)
		}
		// Replica a did not run phase 3 itself: it follows through its watch.
		waitFor(t, aChanged, func() bool {
			bundle, _ := a.CABundle(ctx)
			return string(bundle) == string(certs.EncodeCertsPEM(newRoot))
		})
		assertNoop(t, cs, ns, func() error { _, err := store.DropPreviousRoot(ctx); return err })
		assertNoop(t, cs, ns, func() error { _, err := store.ActivateNextRoot(ctx); return err })
		status, err := store.RotationStatus(ctx)
		if err != nil || status.Started.IsZero() || status.Activated.IsZero() || status.Completed.IsZero() {
			t.Fatalf("RotationStatus = %+v, %v", status, err)
		}
		for _, k := range []string{KeyRotationNextCert, KeyRotationNextKey, KeyRotationPreviousCert} {
			if _, ok := sec.Data[k]; ok && k != KeyRotationPreviousCert {
				t.Errorf("key %s left behind after activation", k)
			}
		}
	})

	// A replica whose watch has not delivered another replica's rotation
	// steps (or those of `certs rotate-root`, another process) reads the
	// phase from the API: what it then signs and trusts must be that
	// phase's, or the trust controller re-issues a bootstrap certificate
	// from the retiring root and the rotation re-issues a serving cert that
	// fails its own check.
	t.Run("a replica whose watch lags signs as the phase it reads", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		a, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		lagging, err := kubernetes.NewForConfig(testenv.StalledWatches(env.Config))
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(ctx, Options{Store: Store{Client: lagging, Namespace: ns}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.AddNextRoot(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ActivateNextRoot(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := b.RotationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != PhaseNextRootActive {
			t.Fatalf("replica b reads phase %q, want %q", st.Phase, PhaseNextRootActive)
		}
		if n := b.State().Bundle.Len(); n != 2 {
			t.Errorf("replica b trusts %d root(s) after reading phase %s, want both", n, st.Phase)
		}
		issueAndVerify(t, b, "lagging.bookstore.svc", certs.UsageServer, certs.ECDSAP256, st.Active)
	})

	t.Run("a deleted CA Secret is created again with the root in use", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		i, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		before, err := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Secrets(ns).Delete(ctx, DefaultSecretName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			after, err := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
			if err == nil {
				if after.UID == before.UID || !reflect.DeepEqual(after.Data, before.Data) || !reflect.DeepEqual(after.Labels, before.Labels) {
					t.Fatalf("re-created Secret differs: data equal %v, labels %v (were %v)", reflect.DeepEqual(after.Data, before.Data), after.Labels, before.Labels)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CA Secret still missing 10 s after its deletion (%v): the next replica to start creates a new root, and the running ones follow it", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A replica starting now uses the same root.
		j, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		if !j.State().Authority.Cert.Equal(i.State().Authority.Cert) {
			t.Fatal("a replica starting after the deletion signs with another root")
		}
	})

	t.Run("an invalid update is ignored and the last good root kept", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		i, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		root := i.State().Authority.Cert
		sec, _ := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
		sec.Data[KeyCABundle] = []byte("broken")
		if _, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A later valid update proves the watch delivered the broken one first.
		sec, _ = cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
		sec.Data[KeyCABundle] = certs.EncodeCertsPEM(root)
		sec.Annotations = map[string]string{"touched": "yes"}
		updated, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for i.State().ResourceVersion != updated.ResourceVersion {
			if time.Now().After(deadline) {
				t.Fatal("the issuer did not follow the Secret")
			}
			time.Sleep(10 * time.Millisecond)
		}
		issueAndVerify(t, i, "still.bookstore.svc", certs.UsageClient, certs.ECDSAP256, root)
	})

	// The rotation loop waits its grace period from the moment the next
	// root became active: a Since read from another phase's timestamp
	// dropped the previous root early (or late).
	t.Run("the rotation loop reads when each phase began", func(t *testing.T) {
		ns := namespace(t, cs)
		ctx := testCtx(t)
		t0 := time.Now().Truncate(time.Second)
		var clock atomic.Int64
		clock.Store(t0.Unix())
		now := func() time.Time { return time.Unix(clock.Load(), 0) }
		i, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256, Now: now}, Keys: ecdsaKeys(t, ctx)})
		if err != nil {
			t.Fatal(err)
		}
		ca := RotationCA(i)
		for n, step := range []struct {
			run   func(context.Context) error
			phase rootrotation.Phase
		}{
			{ca.AddNextRoot, rootrotation.PhaseNextRootAdded},
			{ca.ActivateNextRoot, rootrotation.PhaseNextRootActive},
			{ca.DropPreviousRoot, rootrotation.PhaseComplete},
		} {
			at := t0.Add(time.Duration(n+1) * time.Hour)
			clock.Store(at.Unix())
			if err := step.run(ctx); err != nil {
				t.Fatal(err)
			}
			clock.Store(at.Add(30 * time.Minute).Unix())
			st, err := ca.RotationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != step.phase || !st.Since.Equal(at) {
				t.Errorf("phase %q since %s, want %q since %s", st.Phase, st.Since, step.phase, at)
			}
		}
	})
}

// TestIssuerFollowsRestoredSecret: an etcd snapshot restore takes
// fsm-ca-bundle back to an older version (a lower resourceVersion), here to
// the root before a rotation this process had followed. A replica that
// restarts signs with the restored root; one that runs on must too, or the
// replicas sign pod and serving certificates from different roots and keep
// re-issuing each other's serving certificates. An older version read right
// after a newer one was applied is still a late delivery and refused.
func TestIssuerFollowsRestoredSecret(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	cs := env.Clientset
	ns := namespace(t, cs)
	ctx := testCtx(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	i, err := New(ctx, Options{Store: Store{Client: cs, Namespace: ns, RootKeyAlgorithm: certs.ECDSAP256, Now: clock}, Keys: ecdsaKeys(t, ctx)})
	if err != nil {
		t.Fatal(err)
	}
	restored := i.State()
	rv, err := strconv.ParseUint(restored.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// What this process followed before the restore: a later version of
	// the Secret holding another root.
	later := mustRoot(t, certs.ECDSAP256, 24*time.Hour, now)
	data, err := newSecretData(later)
	if err != nil {
		t.Fatal(err)
	}
	i.apply(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultSecretName, Namespace: ns, ResourceVersion: strconv.FormatUint(rv+1000, 10),
			Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Data: data,
	})
	if !i.State().Authority.Cert.Equal(later.Cert) {
		t.Fatal("the later version was not applied")
	}
	changes := 0
	defer i.OnBundleChange(func() { mu.Lock(); changes++; mu.Unlock() })()

	// A moment later the API's older version is a late read: refused.
	if _, err := i.RotationStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if !i.State().Authority.Cert.Equal(later.Cert) {
		t.Fatal("an older version read right after a newer one was applied")
	}

	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if _, err := i.RotationStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got := i.State(); !got.Authority.Cert.Equal(restored.Authority.Cert) || got.ResourceVersion != restored.ResourceVersion {
		t.Fatalf("a minute on, the issuer still signs with the root of resourceVersion %s, not the restored Secret's (resourceVersion %s) that a restarted replica uses",
			got.ResourceVersion, restored.ResourceVersion)
	}
	bundle, _ := i.CABundle(ctx)
	if string(bundle) != string(restored.BundlePEM) {
		t.Error("CABundle is not the restored Secret's")
	}
	mu.Lock()
	n := changes
	mu.Unlock()
	if n != 1 {
		t.Errorf("bundle change announced %d times, want 1 (the webhooks and the trust controller follow it)", n)
	}
	c, err := i.Issue(ctx, certs.Request{CommonName: "restored.bookstore.svc", Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := chain[0].CheckSignatureFrom(restored.Authority.Cert); err != nil {
		t.Errorf("a certificate issued now is not signed by the restored root: %v", err)
	}
}

func checkRoot(t *testing.T, root *x509.Certificate, sec corev1.Secret) {
	t.Helper()
	if root.Subject.String() != "CN=fsm-ca.flomesh.io,O=Flomesh Service Mesh,L=CA,C=US" {
		t.Errorf("root subject = %s", root.Subject)
	}
	if alg, _ := certs.AlgorithmOf(root.PublicKey); alg != certs.RSA2048 {
		t.Errorf("root key = %s, want RSA2048 by default", alg)
	}
	// Backdated by certs.ClockSkew (and a little for the second precision).
	if got := root.NotAfter.Sub(root.NotBefore); got < certs.RootCAValidity || got > certs.RootCAValidity+certs.ClockSkew+time.Minute {
		t.Errorf("root lifetime = %s, want %s backdated by %s", got, certs.RootCAValidity, certs.ClockSkew)
	}
	if !root.IsCA || root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || root.SerialNumber.BitLen() > 128 {
		t.Errorf("root IsCA=%v KeyUsage=%v serial bits=%d", root.IsCA, root.KeyUsage, root.SerialNumber.BitLen())
	}
	if string(sec.Data[KeyExpiration]) != root.NotAfter.UTC().Format(ExpirationLayout) {
		t.Errorf("expiration = %q", sec.Data[KeyExpiration])
	}
}

// issueAndVerify issues a certificate and checks it with crypto/x509 against
// the issuer's bundle: chain to wantRoot, SAN, usage, validity, key type.
func issueAndVerify(t *testing.T, i *Issuer, name string, usage certs.Usage, alg certs.KeyAlgorithm, wantRoot *x509.Certificate) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	c, err := i.Issue(ctx, certs.Request{CommonName: name, DNSNames: []string{name}, Validity: time.Hour, Usage: usage, KeyAlgorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := i.CABundle(ctx)
	if string(c.CABundle) != string(bundle) {
		t.Fatal("Certificate.CABundle differs from CABundle()")
	}
	if err := certstest.ValidCert(c.CABundle, c.CertPEM, c.KeyPEM, name, usage, time.Now().Add(59*time.Minute)); err != nil {
		t.Fatal(err)
	}
	leaf, _ := certs.ParseCertsPEM(c.CertPEM)
	if err := leaf[0].CheckSignatureFrom(wantRoot); err != nil {
		t.Fatalf("%s is not signed by the expected root: %v", name, err)
	}
	if got, _ := certs.AlgorithmOf(leaf[0].PublicKey); got != alg {
		t.Fatalf("leaf key = %s, want %s", got, alg)
	}
	if d := time.Until(leaf[0].NotAfter); d > time.Hour || d < 59*time.Minute {
		t.Fatalf("leaf expires in %s, want 1h", d)
	}
	return leaf[0]
}

func assertNoop(t *testing.T, cs kubernetes.Interface, ns string, step func() error) {
	t.Helper()
	ctx := context.Background()
	before, err := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := step(); err != nil {
		t.Fatalf("re-running a finished step: %v", err)
	}
	after, err := cs.CoreV1().Secrets(ns).Get(ctx, DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Fatal("re-running a finished step wrote the Secret")
	}
}

// notify never blocks the watch goroutine: one pending signal is enough,
// waitFor re-checks its condition after each.
func notify(ch chan struct{}) func() {
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// waitFor waits for cond, re-checking on every bundle-change notification.
func waitFor(t *testing.T, changed <-chan struct{}, cond func() bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-changed:
		case <-timeout:
			t.Fatal("the replica did not follow the CA Secret within 30s")
		}
	}
}

func namespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tresor-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func ecdsaKeys(t *testing.T, ctx context.Context) *keypool.Set {
	t.Helper()
	s, err := keypool.NewSet(keypool.Options{Algorithm: certs.ECDSAP256, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Start(ctx) }()
	return s
}

func mustRoot(t *testing.T, alg certs.KeyAlgorithm, validity time.Duration, now time.Time) *certs.Authority {
	t.Helper()
	a, err := certs.NewRootAuthority(alg, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func certPEM(a *certs.Authority) []byte { return certs.EncodeCertsPEM(a.Cert) }

func keyPEM(t *testing.T, a *certs.Authority) []byte { return mustKeyPEM(t, a.Key) }

func mustKeyPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	p, err := certs.EncodeKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// assertFSMSigner checks the CA Secret as FSM's controller reads it (it
// keeps running beside us after a switch): its tresor signs with
// private.key under the first certificate of ca.crt, so that certificate
// must be the signing root and private.key its key, in every phase.
func assertFSMSigner(t *testing.T, cs kubernetes.Interface, ns string, signer *x509.Certificate) {
	t.Helper()
	sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(sec.Data[KeyCABundle])
	if block == nil {
		t.Fatalf("%s has no PEM block", KeyCABundle)
	}
	first, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(signer) {
		t.Errorf("the first certificate of %s is %q (NotBefore %s), want the signing root (NotBefore %s): FSM's controller would sign under it with the signing root's key",
			KeyCABundle, first.Subject.CommonName, first.NotBefore, signer.NotBefore)
	}
	key, err := certs.ParseKeyPEM(sec.Data[KeyPrivateKey])
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(first.PublicKey) {
		t.Errorf("%s is not the key of the first certificate of %s", KeyPrivateKey, KeyCABundle)
	}
}

// TestInspectErrorsWrapTheirCause: a parse error behind an invalid CA
// Secret is reachable with errors.As (it was only printed into the
// message), and the message reads as before.
func TestInspectErrorsWrapTheirCause(t *testing.T) {
	now := time.Now()
	good := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	next := mustRoot(t, certs.ECDSAP256, time.Hour, now)
	garbageKey := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"private.key", map[string][]byte{KeyCABundle: certPEM(good), KeyPrivateKey: garbageKey},
			"is invalid: private.key: parsing PRIVATE KEY PEM block: asn1: "},
		{"rotation.next.key", map[string][]byte{
			KeyCABundle: append(certPEM(good), certPEM(next)...), KeyPrivateKey: keyPEM(t, good),
			KeyRotationPhase: []byte(PhaseNextRootAdded), KeyRotationNextCert: certPEM(next), KeyRotationNextKey: garbageKey,
		}, "is invalid: rotation.next.key: parsing PRIVATE KEY PEM block: asn1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.CABundleSecretName}, Data: tc.data}
			_, err := Inspect(s, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			var invalid *InvalidSecretError
			if !errors.As(err, &invalid) {
				t.Fatalf("err %T is not an *InvalidSecretError", err)
			}
			var structural asn1.StructuralError
			var syntax asn1.SyntaxError
			if !errors.As(err, &structural) && !errors.As(err, &syntax) {
				t.Errorf("errors.As finds no asn1 error behind %q", err)
			}
		})
	}
}
