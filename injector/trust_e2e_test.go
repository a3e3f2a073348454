package injector_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestTrustFollowsRootRotation runs a whole tresor root rotation
// (fsm-ca-bundle's rotation.* phases, rootrotation.Rotate with a short grace
// period) over bootstrap Secrets that exist before it: in NextRootAdded every
// cacert.pem holds both roots and the certificates stay; in NextRootActive
// every certificate is re-issued from the new root (same CN, new key, owner
// references appended meanwhile kept), including one a lagging replica
// writes from the old root after activation; the old root is dropped only
// once none is left (the drop is held back while re-issuance is blocked);
// after the drop every cacert.pem holds the new root only.
func TestTrustFollowsRootRotation(t *testing.T) {
	env := startCoreEnv(t, fsmNamespace, "app")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	issuer := newTresor(ctx, t, env.Clientset, 16)
	oldRoot := issuer.State().Authority

	// Six pods' Secrets from before the rotation; three pods exist already,
	// three are created while certificates are re-issued (their Secrets'
	// owner references are appended concurrently with our Updates).
	const n = 6
	uuid := func(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-00000000000%d", i) }
	original := map[string]*x509.Certificate{}
	for i := range n {
		s := bootstrapSecret(ctx, t, issuer, uuid(i))
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		original[s.Name] = leafOf(t, s)
		if i < n/2 {
			createPod(ctx, t, env.Client, uuid(i))
		}
	}

	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, Logger: log})
	// Re-issuance waits until the rotation has been seen holding the drop
	// back, so the test proves the gate rather than racing it.
	release := make(chan struct{})
	trust, err := injector.NewTrustController(injector.TrustControllerOptions{
		Client: env.Clientset, Issuer: gatedIssuer{issuer, release}, Rotation: tresor.RotationCA(issuer), MeshName: meshName,
		Resync: 200 * time.Millisecond, RetryInterval: 200 * time.Millisecond, Workers: 3, Logger: log.WithName("trust"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(trust); err != nil {
		t.Fatal(err)
	}
	startManager(ctx, t, mgr, cancel)
	reissuedBefore := reissued(t)

	var (
		mu     sync.Mutex
		phases []rootrotation.Phase
		held   []string
		once   sync.Once
	)
	check := injector.RetiringRootCheck(env.Clientset)
	opts := rootrotation.Options{
		CA: tresor.RotationCA(issuer), Issuer: issuer, Client: env.Clientset,
		Trusted: func(context.Context, *x509.Certificate) error { return nil }, // no webhook configurations here
		Grace:   500 * time.Millisecond, PollInterval: 100 * time.Millisecond, DependentsPollInterval: 100 * time.Millisecond, Settle: time.Millisecond,
		Log: log.WithName("rotation"),
		Dependents: func(ctx context.Context, root *x509.Certificate) error {
			err := check(ctx, root)
			if err != nil {
				mu.Lock()
				held = append(held, err.Error())
				mu.Unlock()
				once.Do(func() { close(release) })
			}
			return err
		},
	}
	opts.OnPhase = func(st rootrotation.Status) {
		mu.Lock()
		phases = append(phases, st.Phase)
		mu.Unlock()
		switch st.Phase {
		case rootrotation.PhaseNextRootAdded:
			// Every pod's trust holds both roots; certificates stay on the
			// old root, which still signs.
			waitFor(t, settleWithin, func() error {
				return eachSecret(ctx, env.Client, func(s *corev1.Secret) error {
					if err := holdsRoots(s, oldRoot.Cert, st.Next); err != nil {
						return err
					}
					return certs.ChainsTo(s.Data[injector.RepoCertKey], oldRoot.Cert, time.Now())
				})
			})
		case rootrotation.PhaseNextRootActive:
			for i := n / 2; i < n; i++ {
				createPod(ctx, t, env.Client, uuid(i))
			}
			// A replica that has not seen the activation yet writes one
			// more Secret from the old root.
			late := lateSecret(t, oldRoot, issuer, uuid(n))
			if err := env.Client.Create(ctx, late); err != nil {
				t.Error(err)
			}
			createPod(ctx, t, env.Client, uuid(n))
			mu.Lock()
			original[late.Name] = leafOf(t, late)
			mu.Unlock()
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	if err := rootrotation.Rotate(rctx, opts); err != nil {
		t.Fatal(err)
	}

	if want := []rootrotation.Phase{rootrotation.PhaseNextRootAdded, rootrotation.PhaseNextRootActive, rootrotation.PhaseComplete}; fmt.Sprint(phases) != fmt.Sprint(want) {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	if len(held) == 0 || !strings.Contains(held[0], "still hold a certificate signed by the retiring root") {
		t.Fatalf("the drop was never held back by the Secrets of the old root (%q)", held)
	}
	t.Logf("the drop of the old root waited for %d check(s); first: %s", len(held), held[0])
	newRoot := issuer.State().Authority.Cert
	if bytes.Equal(newRoot.Raw, oldRoot.Cert.Raw) {
		t.Fatal("the signing root did not change")
	}
	// After the drop: the new root only, every certificate from it, same
	// CN, a new key.
	waitFor(t, settleWithin, func() error {
		return eachSecret(ctx, env.Client, func(s *corev1.Secret) error {
			if err := holdsRoots(s, newRoot); err != nil {
				return err
			}
			if err := certs.ChainsTo(s.Data[injector.RepoCertKey], newRoot, time.Now()); err != nil {
				return err
			}
			return nil
		})
	})
	var count int
	if err := eachSecret(ctx, env.Client, func(s *corev1.Secret) error {
		count++
		leaf, was := leafOf(t, s), original[s.Name]
		if leaf.Subject.CommonName != was.Subject.CommonName || !strings.HasPrefix(leaf.Subject.CommonName, s.Labels[injector.ProxyUUIDLabel]+".sidecar.") {
			return fmt.Errorf("%s: CN %q, was %q", s.Name, leaf.Subject.CommonName, was.Subject.CommonName)
		}
		if bytes.Equal(leaf.RawSubjectPublicKeyInfo, was.RawSubjectPublicKeyInfo) {
			return fmt.Errorf("%s: re-issued with the old key", s.Name)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if count != n+1 {
		t.Errorf("%d bootstrap Secrets, want %d", count, n+1)
	}
	if d := reissued(t) - reissuedBefore; d != n+1 {
		t.Errorf("fsm_webhooks_injector_bootstrap_certs_reissued_total went up by %v, want %d", d, n+1)
	}
	if err := check(ctx, oldRoot.Cert); err != nil {
		t.Errorf("after the rotation: %v", err)
	}
}

// gatedIssuer holds every Issue until release is closed.
type gatedIssuer struct {
	*tresor.Issuer
	release chan struct{}
}

func (g gatedIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Issuer.Issue(ctx, req)
}

// bootstrapRequest is the certificate request the injector makes for the
// pod "web" with proxy uuid id in namespace app.
func bootstrapRequest(id string) certs.Request {
	cn := injector.CommonName(id, "web", "app", "cluster.local")
	return certs.Request{CommonName: cn, DNSNames: []string{cn}, Organization: "Flomesh Service Mesh",
		Validity: time.Hour, Usage: certs.UsageBoth}
}

func bootstrapSecret(ctx context.Context, t *testing.T, issuer certs.Issuer, id string) *corev1.Secret {
	t.Helper()
	cert, err := issuer.Issue(ctx, bootstrapRequest(id))
	if err != nil {
		t.Fatal(err)
	}
	return secretWith(t, id, cert)
}

// lateSecret is a Secret whose certificate the old root signed after the
// new one became active (a replica that has not followed yet).
func lateSecret(t *testing.T, old *certs.Authority, issuer *tresor.Issuer, id string) *corev1.Secret {
	t.Helper()
	key, err := certs.GenerateKey(certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := old.Issue(bootstrapRequest(id), key, issuer.State().BundlePEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return secretWith(t, id, cert)
}

// secretWith is the bootstrap Secret the injector writes for id with cert.
func secretWith(t *testing.T, id string, cert *certs.Certificate) *corev1.Secret {
	t.Helper()
	s, err := injector.BootstrapSecret("app", meshName, id, cert, injector.BootstrapConfig{NodeID: bootstrapRequest(id).CommonName})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createPod(ctx context.Context, t *testing.T, cl client.Client, id string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-" + id[len(id)-1:], Labels: map[string]string{injector.ProxyUUIDLabel: id}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if err := cl.Create(ctx, pod); err != nil {
		t.Error(err)
	}
}

func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	chain, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	return chain[0]
}

// holdsRoots: cacert.pem is exactly roots.
func holdsRoots(s *corev1.Secret, roots ...*x509.Certificate) error {
	have, err := certs.ParseBundle(time.Now(), s.Data[injector.CACertKey])
	if err != nil {
		return fmt.Errorf("%s: %s: %w", s.Name, injector.CACertKey, err)
	}
	if want := certs.NewBundle(time.Now(), roots...); !have.Equal(want) {
		return fmt.Errorf("%s: %s holds %d root(s), want %d", s.Name, injector.CACertKey, have.Len(), want.Len())
	}
	return nil
}

func eachSecret(ctx context.Context, cl client.Client, fn func(*corev1.Secret) error) error {
	list := &corev1.SecretList{}
	if err := cl.List(ctx, list, client.InNamespace("app"), client.HasLabels{injector.ProxyUUIDLabel}); err != nil {
		return err
	}
	for i := range list.Items {
		if err := fn(&list.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reissued is fsm_webhooks_injector_bootstrap_certs_reissued_total.
func reissued(t *testing.T) float64 {
	t.Helper()
	n, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_certs_reissued_total", nil)
	return n
}

// TestTrustLateAdmissionAfterBundleChange: an admission reads the bundle
// just before it changes (here the drop of the previous root, the rotation's
// last step, after which nothing retires) and writes its bootstrap Secret
// only after the trust controller's pass for the new bundle listed the
// Secrets. The controller still brings that Secret's cacert.pem onto the new
// bundle, with a provider that records its rotation (tresor) or one that
// only changes its bundle (Vault, cert-manager: no RotationReader). A
// replica that starts just after the change (a rollout: the stopping one may
// still write such a Secret) settles too when the provider records when the
// trust changed.
func TestTrustLateAdmissionAfterBundleChange(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rotation bool
		// startAfter: the controller's first read is of the new bundle.
		startAfter bool
	}{
		{"rotation", true, false},
		{"bundle only", false, false},
		{"rotation, started after the change", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startCoreEnv(t, fsmNamespace, "app")
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			issuer := newTresor(ctx, t, env.Clientset, 4)
			oldRoot := issuer.State().Authority.Cert
			if _, err := issuer.AddNextRoot(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := issuer.ActivateNextRoot(ctx); err != nil {
				t.Fatal(err)
			}
			newRoot := issuer.State().Authority.Cert
			// One Secret written before the drop, and one an admission
			// builds now from the bundle it read (both roots).
			early := bootstrapSecret(ctx, t, issuer, "00000000-0000-0000-0000-000000000001")
			late := bootstrapSecret(ctx, t, issuer, "00000000-0000-0000-0000-000000000002")
			if err := holdsRoots(late, oldRoot, newRoot); err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctx, early); err != nil {
				t.Fatal(err)
			}
			drop := func() {
				t.Helper()
				if _, err := issuer.DropPreviousRoot(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tc.startAfter {
				drop()
			}

			read := &bundleReads{Issuer: issuer, first: make(chan struct{})}
			opts := injector.TrustControllerOptions{
				Client: env.Clientset, Issuer: read, MeshName: meshName,
				Resync: 100 * time.Millisecond, RetryInterval: 100 * time.Millisecond, Logger: testr.New(t).WithName("trust"),
			}
			if tc.rotation {
				opts.Rotation = tresor.RotationCA(issuer)
			}
			trust, err := injector.NewTrustController(opts)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- trust.Start(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("trust controller: %v", err)
				}
			})

			if !tc.startAfter {
				// The controller has read the trust before the change,
				// as a running replica has.
				select {
				case <-read.first:
				case <-time.After(settleWithin):
					t.Fatalf("the trust controller did not read the CA bundle within %s", settleWithin)
				}
				drop()
			}
			one := func(name string) func() error {
				return func() error {
					s := &corev1.Secret{}
					if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "app", Name: name}, s); err != nil {
						return err
					}
					return holdsRoots(s, newRoot)
				}
			}
			waitFor(t, settleWithin, one(early.Name))
			// The pass that wrote it has ended, and several re-reads since
			// found the trust unchanged, before the late Secret lands.
			time.Sleep(time.Second)
			if err := env.Client.Create(ctx, late); err != nil {
				t.Fatal(err)
			}
			waitFor(t, settleWithin, one(late.Name))
		})
	}
}

// bundleReads closes first when a CABundle read has returned.
type bundleReads struct {
	*tresor.Issuer
	first chan struct{}
	once  sync.Once
}

func (b *bundleReads) CABundle(ctx context.Context) ([]byte, error) {
	pem, err := b.Issuer.CABundle(ctx)
	if err == nil {
		b.once.Do(func() { close(b.first) })
	}
	return pem, err
}

// TestTrustOnLaggingReplica: a replica whose CA Secret watch has not
// delivered the activation of the next root (another replica's step, or
// `certs rotate-root` run elsewhere) reads phase NextRootActive from the API
// and re-issues each certificate of the retiring root: from the new root,
// once. Signed by the retiring root, the write would be redone by the next
// pass and counted twice as a re-issue.
func TestTrustOnLaggingReplica(t *testing.T) {
	env := startCoreEnv(t, fsmNamespace, "app")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rotating := newTresor(ctx, t, env.Clientset, 4)
	laggingClient, err := kubernetes.NewForConfig(testenv.StalledWatches(env.Config))
	if err != nil {
		t.Fatal(err)
	}
	lagging := newTresor(ctx, t, laggingClient, 4)
	oldRoot := rotating.State().Authority.Cert
	s := bootstrapSecret(ctx, t, rotating, "00000000-0000-0000-0000-000000000001")
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := rotating.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rotating.ActivateNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	newRoot := rotating.State().Authority.Cert

	trust, err := injector.NewTrustController(injector.TrustControllerOptions{
		Client: env.Clientset, Issuer: lagging, Rotation: tresor.RotationCA(lagging), MeshName: meshName,
		Logger: testr.New(t).WithName("trust"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := trust.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := trust.Sync(ctx, ts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reissued != 1 {
		t.Errorf("re-issued %d certificate(s), want 1", res.Reissued)
	}
	got := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), got); err != nil {
		t.Fatal(err)
	}
	if err := certs.ChainsTo(got.Data[injector.RepoCertKey], newRoot, time.Now()); err != nil {
		t.Errorf("re-issued certificate: %v", err)
	}
	if err := holdsRoots(got, oldRoot, newRoot); err != nil {
		t.Error(err)
	}
}
