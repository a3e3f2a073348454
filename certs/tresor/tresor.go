// Package tresor is the built-in mesh CA: a root kept in the Secret
// fsm-ca-bundle of the fsm namespace, signing leaves in process.
//
// The Secret is created once, with create-only semantics, so replicas starting
// together converge on one root. A Secret that exists is never overwritten: a
// malformed one stops start-up with a message naming it, and one we did not
// create (bring-your-own root) is used as is and never rotated by us. Every
// Issuer follows the Secret, so after another replica rotates the root all
// replicas sign with the new active root and report the new bundle.
package tresor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/internal/transient"
)

// ProviderName is Provider()'s value and the --certificate-manager flag value.
const ProviderName = "tresor"

// Store reads, creates and rotates the CA Secret. It holds no state beyond
// its configuration; `certs rotate-root` and `certs status` use it without an
// Issuer.
type Store struct {
	Client    kubernetes.Interface
	Namespace string
	// Name of the Secret; empty means DefaultSecretName.
	Name string
	// RootKeyAlgorithm for roots we create; empty means RSA-2048.
	RootKeyAlgorithm certs.KeyAlgorithm
	// RootValidity for roots we create; zero means certs.RootCAValidity.
	RootValidity time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *Store) name() string {
	if s.Name == "" {
		return DefaultSecretName
	}
	return s.Name
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Store) validate() error {
	if s.Client == nil {
		return errors.New("tresor: Client is required")
	}
	if s.Namespace == "" {
		return errors.New("tresor: Namespace is required")
	}
	if err := s.RootKeyAlgorithm.Validate(); err != nil {
		return fmt.Errorf("tresor: RootKeyAlgorithm: %w", err)
	}
	if s.RootValidity < 0 {
		return fmt.Errorf("tresor: RootValidity must not be negative, got %s", s.RootValidity)
	}
	return nil
}

func (s *Store) newRoot() (*certs.Authority, error) {
	v := s.RootValidity
	if v == 0 {
		v = certs.RootCAValidity
	}
	return certs.NewRootAuthority(s.RootKeyAlgorithm, v, s.now())
}

func (s *Store) ref() string { return s.Namespace + "/" + s.name() }

// Check reads the Secret and inspects it; it never writes.
func (s *Store) Check(ctx context.Context) (*State, error) {
	_, st, err := s.read(ctx)
	return st, err
}

// read is Check that also returns the Secret it inspected.
func (s *Store) read(ctx context.Context) (*corev1.Secret, *State, error) {
	if err := s.validate(); err != nil {
		return nil, nil, err
	}
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.name(), metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA Secret %s: %w", s.ref(), err)
	}
	st, err := Inspect(sec, s.now())
	return sec, st, err
}

// Ensure returns the CA, creating the Secret if it does not exist. Creation
// is create-only: when another replica wins the race (AlreadyExists) its root
// is read back and used. An existing Secret is only read.
func (s *Store) Ensure(ctx context.Context) (*State, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	sec, err := secrets.Get(ctx, s.name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		sec, err = s.create(ctx)
	}
	if err != nil {
		return nil, err
	}
	return Inspect(sec, s.now())
}

func (s *Store) create(ctx context.Context) (*corev1.Secret, error) {
	root, err := s.newRoot()
	if err != nil {
		return nil, fmt.Errorf("creating root CA for %s: %w", s.ref(), err)
	}
	data, err := newSecretData(root)
	if err != nil {
		return nil, fmt.Errorf("creating root CA for %s: %w", s.ref(), err)
	}
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	sec, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.name(),
			Namespace: s.Namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedByValue},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		sec, err = secrets.Get(ctx, s.name(), metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("creating CA Secret %s: %w", s.ref(), err)
	}
	return sec, nil
}

// RotationStatus reads the Secret and reports its roots and rotation phase.
func (s *Store) RotationStatus(ctx context.Context) (RotationStatus, error) {
	st, err := s.Check(ctx)
	if err != nil {
		return RotationStatus{}, err
	}
	return st.Rotation, nil
}

// AddNextRoot is rotation phase 1: generate a new root and publish it in
// ca.crt beside the current one; leaves keep being signed by the current
// root. A no-op when a rotation is already past this step. Started again
// after PhaseComplete it begins a new rotation.
func (s *Store) AddNextRoot(ctx context.Context) (RotationStatus, error) {
	var next *certs.Authority // generated once, reused if the update is retried
	st, err := s.mutate(ctx, "add next root", func(sec *corev1.Secret, st *State) (map[string][]byte, bool, error) {
		return planAddNextRoot(sec, st, func() (*certs.Authority, error) {
			if next == nil {
				n, err := s.newRoot()
				if err != nil {
					return nil, fmt.Errorf("generating next root: %w", err)
				}
				next = n
			}
			return next, nil
		}, s.now())
	})
	if err != nil {
		return RotationStatus{}, err
	}
	return st.Rotation, nil
}

// ActivateNextRoot is rotation phase 2: sign with the new root; both roots
// stay trusted. A no-op when already done.
func (s *Store) ActivateNextRoot(ctx context.Context) (RotationStatus, error) {
	st, err := s.mutate(ctx, "activate next root", func(sec *corev1.Secret, st *State) (map[string][]byte, bool, error) {
		return planActivateNextRoot(sec, st, s.now())
	})
	if err != nil {
		return RotationStatus{}, err
	}
	return st.Rotation, nil
}

// DropPreviousRoot is rotation phase 3: remove the old root from ca.crt.
// A no-op when already done.
func (s *Store) DropPreviousRoot(ctx context.Context) (RotationStatus, error) {
	st, err := s.mutate(ctx, "drop previous root", func(sec *corev1.Secret, st *State) (map[string][]byte, bool, error) {
		return planDropPreviousRoot(sec, st, s.now())
	})
	if err != nil {
		return RotationStatus{}, err
	}
	return st.Rotation, nil
}

// mutate applies one rotation step as a single Update guarded by the
// resourceVersion it read; on a conflict (another replica wrote first) it
// re-reads and re-plans, which turns a step someone else finished into a
// no-op.
func (s *Store) mutate(ctx context.Context, op string, plan func(*corev1.Secret, *State) (map[string][]byte, bool, error)) (*State, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	var out *State
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		sec, err := secrets.Get(ctx, s.name(), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading CA Secret %s: %w", s.ref(), err)
		}
		st, err := Inspect(sec, s.now())
		if err != nil {
			return err
		}
		if !st.Rotation.Managed {
			return fmt.Errorf("CA Secret %s is not managed by fsm-webhooks (no label %s=%s): a root fsm-webhooks did not create (FSM's, or one brought by the operator) is rotated by its owner, never by us",
				s.ref(), LabelManagedBy, ManagedByValue)
		}
		data, changed, err := plan(sec, st)
		if err != nil {
			return err
		}
		if !changed {
			out = st
			return nil
		}
		sec = sec.DeepCopy()
		sec.Data = data
		updated, err := secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if err != nil {
			if apierrors.IsConflict(err) {
				return err // retried
			}
			return fmt.Errorf("updating CA Secret %s: %w", s.ref(), err)
		}
		out, err = Inspect(updated, s.now())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("root rotation: %s: %w", op, err)
	}
	return out, nil
}

// Options configure an Issuer.
type Options struct {
	Store
	// Keys supplies leaf keys. Nil means a keypool.Set of
	// keypool.DefaultSize RSA-2048 keys refilled until New's ctx ends.
	Keys   *keypool.Set
	Logger logr.Logger
	// MustExist: a missing CA Secret is an error (NotFound) instead of
	// being created with a new root. For tools acting on a running mesh's
	// CA (`certs rotate-root`): a wrong namespace or Secret name must not
	// mint a stray CA and rotate it.
	MustExist bool
}

// Issuer is the Tresor certs.Issuer. It is safe for concurrent use.
type Issuer struct {
	store Store
	keys  *keypool.Set
	log   logr.Logger
	state atomic.Pointer[State]

	subs certs.Subscribers
}

var (
	_ certs.Issuer         = (*Issuer)(nil)
	_ certs.BundleNotifier = (*Issuer)(nil)
)

// New ensures the CA Secret exists and is valid, then follows it until ctx
// ends. A malformed Secret is an error and is left as it is.
func New(ctx context.Context, opts Options) (*Issuer, error) {
	ensure := opts.Ensure
	if opts.MustExist {
		ensure = opts.Check
	}
	st, err := load(ctx, opts.Logger, ensure)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "load root CA", Err: err}
	}
	i := &Issuer{store: opts.Store, keys: opts.Keys, log: opts.Logger}
	if i.keys == nil {
		i.keys, err = keypool.NewSet(keypool.Options{Size: keypool.DefaultSize, Logger: opts.Logger})
		if err != nil {
			return nil, &certs.ProviderError{Provider: ProviderName, Op: "key pool", Err: err}
		}
		go func() { _ = i.keys.Start(ctx) }()
	}
	st.applied = i.store.now()
	i.state.Store(st)
	i.log.Info("Using root CA", "secret", st.Namespace+"/"+st.Name, "managed", st.Rotation.Managed,
		"subject", st.Authority.Cert.Subject.String(), "notAfter", st.Authority.Cert.NotAfter, "phase", st.Rotation.Phase)
	if err := i.follow(ctx); err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "watch root CA", Err: err}
	}
	return i, nil
}

// load reads (or creates) the CA Secret through ensure, retrying for up to
// transient.Window while the apiserver answers with a transient error: an
// etcd leader change or an overloaded apiserver while replicas start must
// not end the process, as an error here does. A retried create that had
// landed is found by the next attempt (create-only, AlreadyExists, Get).
func load(ctx context.Context, log logr.Logger, ensure func(context.Context) (*State, error)) (*State, error) {
	var st *State
	err := transient.Retry(ctx, log, 0, "load the root CA", func(ctx context.Context) (err error) {
		st, err = ensure(ctx)
		return err
	})
	return st, err
}

// follow watches the one CA Secret and applies every valid version of it
// newer than the one applied, and an older one once staleVersionWindow has
// passed (apply).
func (i *Issuer) follow(ctx context.Context) error {
	lw := cache.NewListWatchFromClient(i.store.Client.CoreV1().RESTClient(), "secrets", i.store.Namespace,
		fields.OneTermEqualSelector("metadata.name", i.store.name()))
	onChange := func(obj any) {
		if sec, ok := obj.(*corev1.Secret); ok {
			i.apply(sec)
		}
	}
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Secret{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    onChange,
			UpdateFunc: func(_, obj any) { onChange(obj) },
			DeleteFunc: func(any) { go i.recreate(ctx) },
		},
	})
	go ctrl.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), ctrl.HasSynced) {
		return fmt.Errorf("CA Secret %s: watch did not sync: %w", i.store.ref(), ctx.Err())
	}
	return nil
}

// recreate creates the CA Secret again, create-only, from the version this
// Issuer signs with, after the watch saw it deleted (a `kubectl delete`, FSM
// v1.5.1's post-delete hook `fsm-cleanup` run while these servers mesh the
// pods). Left deleted, the next replica to start created a new root that the
// running ones followed: every certificate of the mesh (bootstrap, serving,
// FSM's controller's) on the lost root, whose key only these processes
// still held. A Secret someone created meanwhile (AlreadyExists: another
// replica, a restore from a backup) is followed as any other version.
func (i *Issuer) recreate(ctx context.Context) {
	st := i.state.Load()
	_, err := i.store.Client.CoreV1().Secrets(i.store.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: i.store.name(), Namespace: i.store.Namespace, Labels: st.labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       st.data,
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		i.log.Info("CA Secret deleted; created it again with the root in use", "secret", i.store.ref(),
			"subject", st.Authority.Cert.Subject.String(), "phase", st.Rotation.Phase)
	case apierrors.IsAlreadyExists(err) || ctx.Err() != nil:
	default:
		i.log.Error(err, "CA Secret deleted and not created again; still signing with the last root seen, a restart creates a new one",
			"secret", i.store.ref())
	}
}

// staleVersionWindow bounds how long after a version was applied an older
// one counts as a late delivery (a watch event queued behind this process's
// own rotation write, a read that raced a newer one) and is refused: far
// longer than a watch lags, and short enough that after an etcd restore
// (resource versions go back) the restored Secret is what a running replica
// signs with, as one that restarts does. Refused for good, the replicas
// signed from different roots and re-issued each other's serving certs.
const staleVersionWindow = 30 * time.Second

// apply switches to sec if it is a newer, valid version of the CA Secret,
// or an older one (an etcd restore) read staleVersionWindow after the
// current one was applied. An invalid version is logged and ignored: we keep
// signing with the last good root rather than stop issuing.
func (i *Issuer) apply(sec *corev1.Secret) {
	cur := i.state.Load()
	now := i.store.now()
	back := !newerVersion(sec.ResourceVersion, cur.ResourceVersion)
	if back && (sec.ResourceVersion == cur.ResourceVersion || now.Sub(cur.applied) < staleVersionWindow) {
		return
	}
	st, err := Inspect(sec, now)
	if err != nil {
		i.log.Error(err, "Ignoring an invalid update of the CA Secret; still using the previous root")
		return
	}
	st.applied = now
	if !i.state.CompareAndSwap(cur, st) {
		i.apply(sec) // raced with another apply; re-check against the winner
		return
	}
	if back {
		i.log.Info("CA Secret went back to an older version (an etcd restore?); following it", "secret", i.store.ref(),
			"resourceVersion", st.ResourceVersion, "previousResourceVersion", cur.ResourceVersion, "phase", st.Rotation.Phase)
	}
	if string(st.BundlePEM) == string(cur.BundlePEM) && st.Authority.Cert.Equal(cur.Authority.Cert) {
		return
	}
	i.log.Info("Root CA changed", "phase", st.Rotation.Phase, "trustedRoots", st.Bundle.Len(),
		"signingRootNotAfter", st.Authority.Cert.NotAfter)
	i.subs.Notify()
}

// newerVersion orders resourceVersions. They are opaque in general, but the
// apiserver's are etcd revisions; when both parse as integers we refuse to go
// back in time (a late watch event after our own rotation write), otherwise
// any different version is taken as newer.
func newerVersion(candidate, current string) bool {
	if candidate == current {
		return false
	}
	c, err1 := strconv.ParseUint(candidate, 10, 64)
	k, err2 := strconv.ParseUint(current, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return c > k
}

// OnBundleChange registers f to run whenever the trusted bundle or the
// signing root changes. It runs on the goroutine that applied the change:
// the watch's, or that of a caller of a rotation step or RotationStatus
// (the trust controller's pass, the rotation loop), so f must not block and
// may run concurrently with itself. The returned func unregisters it.
func (i *Issuer) OnBundleChange(f func()) (cancel func()) { return i.subs.OnBundleChange(f) }

// State is the CA currently in use.
func (i *Issuer) State() *State { return i.state.Load() }

// Provider implements certs.Issuer.
func (i *Issuer) Provider() string { return ProviderName }

// CABundle implements certs.Issuer: every root currently trusted.
func (i *Issuer) CABundle(context.Context) ([]byte, error) {
	return append([]byte(nil), i.state.Load().BundlePEM...), nil
}

// Issue implements certs.Issuer: a pooled key and one signature by the
// active root.
func (i *Issuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if err := req.Validate(); err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "issue", Err: err}
	}
	key, err := i.keys.Get(ctx, req.KeyAlgorithm)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "issue " + req.CommonName, Err: err}
	}
	st := i.state.Load()
	c, err := st.Authority.Issue(req, key, st.BundlePEM, i.store.now())
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "issue " + req.CommonName, Err: err}
	}
	return c, nil
}

// AddNextRoot runs Store.AddNextRoot and applies the result at once.
func (i *Issuer) AddNextRoot(ctx context.Context) (RotationStatus, error) {
	return i.rotate(ctx, i.store.AddNextRoot)
}

// ActivateNextRoot runs Store.ActivateNextRoot and applies the result at once.
func (i *Issuer) ActivateNextRoot(ctx context.Context) (RotationStatus, error) {
	return i.rotate(ctx, i.store.ActivateNextRoot)
}

// DropPreviousRoot runs Store.DropPreviousRoot and applies the result at once.
func (i *Issuer) DropPreviousRoot(ctx context.Context) (RotationStatus, error) {
	return i.rotate(ctx, i.store.DropPreviousRoot)
}

// RotationStatus reads the Secret's rotation state from the API and applies
// that version at once, as rotate does. Callers act on the phase read (the
// trust controller re-issues what the retiring root signed, a resumed
// rotation re-issues the serving certs): before the watch delivered another
// replica's step, this Issuer still signed with the root that phase retires.
func (i *Issuer) RotationStatus(ctx context.Context) (RotationStatus, error) {
	sec, st, err := i.store.read(ctx)
	if err != nil {
		return RotationStatus{}, err
	}
	i.apply(sec)
	return st.Rotation, nil
}

func (i *Issuer) rotate(ctx context.Context, step func(context.Context) (RotationStatus, error)) (RotationStatus, error) {
	if _, err := step(ctx); err != nil {
		return RotationStatus{}, err
	}
	// Apply what the API holds now (ours or a newer write), not waiting for
	// the watch event.
	sec, err := i.store.Client.CoreV1().Secrets(i.store.Namespace).Get(ctx, i.store.name(), metav1.GetOptions{})
	if err != nil {
		return RotationStatus{}, fmt.Errorf("reading CA Secret %s: %w", i.store.ref(), err)
	}
	i.apply(sec)
	return i.state.Load().Rotation, nil
}
