package injector

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// storedInjectedPod is an injected pod of uuid id as the apiserver stores it,
// and a fake client (cache and API alike) holding it with the uuid index.
func storedInjectedPod(t *testing.T, id string) (*Mutation, client.Client) {
	t.Helper()
	mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
	if err != nil {
		t.Fatal(err)
	}
	pod := mut.Pod.DeepCopy()
	pod.Namespace, pod.Name, pod.UID = "app", "p", "uid-p"
	cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("app", nil), pod).
		WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
		Build()
	return mut, cl
}

// TestStoredPodRecordPastTTL: a Secret handed off as slow carries the
// certificate the admission already signed. The writer may reach the stored
// pod more than the TTL after the admission (an overloaded apiserver: the
// very reason for the hand-off; a create retried with back-off): it still
// writes that Secret, signs no second certificate, and leaves no record for
// expire() to count as a pod that never appeared.
func TestStoredPodRecordPastTTL(t *testing.T) {
	const id = "u-late"
	ctx := context.Background()
	mut, cl := storedInjectedPod(t, id)
	built := builtSecret(t, mut, id)
	now := time.Now()
	pending := NewPendingSecrets(0)
	pending.now = func() time.Time { return now }
	issuer := &countingIssuer{}
	h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
	if err != nil {
		t.Fatal(err)
	}
	if !pending.add("app", id, mut, built) {
		t.Fatal("store closed")
	}
	now = now.Add(DefaultOrphanGracePeriod + time.Second) // the writer is behind
	w := &secretWriter{cache: cl, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
	if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if n := issuer.issued.Load(); n != 0 {
		t.Errorf("%d certificate(s) signed by the writer for a pod whose admission already signed one (handed off with it built)", n)
	}
	if n := pending.expire(); n != 0 {
		t.Errorf("expire() drops %d record(s) of a pod that was stored and got its Secret: counted in fsm_webhooks_injector_pending_secrets_expired_total as a pod that never appeared", n)
	}
}

// blockingIssuer blocks its first Issue until release is closed.
type blockingIssuer struct {
	stubIssuer
	issued  atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (b *blockingIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if b.issued.Add(1) == 1 {
		close(b.entered)
		<-b.release
	}
	return b.stubIssuer.Issue(ctx, req)
}

// TestShutdownFlushRacesReconcile: the manager stops the writer controller
// and runPending at once. A record whose Secret a worker is writing at that
// moment is the worker's: the flush does not write it too (a second
// certificate for one pod; for a record the admission built, the one Secret
// counted twice, controller then admission for the flush's AlreadyExists).
func TestShutdownFlushRacesReconcile(t *testing.T) {
	t.Run("certificate", func(t *testing.T) {
		const id = "u-race"
		ctx := context.Background()
		mut, cl := storedInjectedPod(t, id)
		pending := NewPendingSecrets(0)
		issuer := &blockingIssuer{entered: make(chan struct{}), release: make(chan struct{})}
		h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
		if err != nil {
			t.Fatal(err)
		}
		pending.add("app", id, mut, nil)
		w := &secretWriter{cache: cl, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
		key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
		done := make(chan error, 1)
		go func() {
			_, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key})
			done <- err
		}()
		<-issuer.entered // the worker is issuing the certificate
		sctx, cancel := context.WithCancel(ctx)
		cancel() // the manager stops
		flushed := make(chan error, 1)
		go func() { flushed <- w.runPending(sctx) }()
		time.Sleep(200 * time.Millisecond)
		close(issuer.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		if n := issuer.issued.Load(); n != 1 {
			t.Errorf("%d certificates signed for one pod, want 1", n)
		}
	})
	t.Run("metric", func(t *testing.T) {
		const id = "u-race-built"
		ctx := context.Background()
		mut, base := storedInjectedPod(t, id)
		built := builtSecret(t, mut, id)
		entered, release := make(chan struct{}), make(chan struct{})
		var creates atomic.Int32
		cl := &slowFirstCreate{Client: base, creates: &creates, entered: entered, release: release}
		pending := NewPendingSecrets(0)
		h, err := NewHandler(Options{Client: cl, Namespaces: base, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
		if err != nil {
			t.Fatal(err)
		}
		pending.add("app", id, mut, built)
		w := &secretWriter{cache: base, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
		before := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission)) + testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByController))
		key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
		done := make(chan error, 1)
		go func() {
			_, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key})
			done <- err
		}()
		<-entered // the worker's create is under way
		sctx, cancel := context.WithCancel(ctx)
		cancel()
		flushed := make(chan error, 1)
		go func() { flushed <- w.runPending(sctx) }()
		time.Sleep(200 * time.Millisecond)
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		after := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission)) + testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByController))
		if after-before != 1 {
			t.Errorf("fsm_webhooks_injector_bootstrap_secrets_written_total rose by %v for one Secret, want 1", after-before)
		}
	})
	t.Run("found", func(t *testing.T) {
		// The abandoned create landed and the cache shows it: the worker
		// decides writeNothing and, the record late, reads the Secret to
		// attribute it; meanwhile the flush, which must not get that record,
		// creates the built Secret, is answered AlreadyExists and counts it.
		for _, tc := range []struct {
			name string
			// stopCtx: the worker runs on the manager's context, which
			// ends as the flush starts; else its read is answered anyway
			// (as a count with no read, of a record not late, races).
			stopCtx bool
		}{
			{name: "read answered"},
			{name: "read under the manager's ended context", stopCtx: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				const id = "u-race-found"
				ctx := context.Background()
				mut, base := storedInjectedPod(t, id)
				built := builtSecret(t, mut, id)
				if err := base.Create(ctx, built.DeepCopy()); err != nil {
					t.Fatal(err)
				}
				entered, release := make(chan struct{}), make(chan struct{})
				var reads atomic.Int32
				cl := &slowFirstSecretRead{Client: base, reads: &reads, entered: entered, release: release}
				pending := NewPendingSecrets(0)
				h, err := NewHandler(Options{Client: cl, Namespaces: base, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
				if err != nil {
					t.Fatal(err)
				}
				pending.add("app", id, mut, built)
				late := func() time.Time { return time.Now().Add(DefaultRepairDelay) }
				w := &secretWriter{cache: base, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: late}
				counted := func() float64 {
					return testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission)) + testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByController)) +
						testutil.ToFloat64(secretsFound.WithLabelValues(writtenByController))
				}
				before := counted()
				key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
				sctx, cancel := context.WithCancel(ctx) // the manager's
				rctx := ctx
				if tc.stopCtx {
					rctx = sctx
				}
				done := make(chan error, 1)
				go func() {
					_, err := w.Reconcile(rctx, reconcile.Request{NamespacedName: key})
					done <- err
				}()
				<-entered // the worker decided writeNothing and reads the Secret
				cancel()
				if err := w.runPending(sctx); err != nil {
					t.Fatal(err)
				}
				close(release)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if got := counted() - before; got != 1 {
					t.Errorf("written_total{admission,controller} + found_written_total{controller} rose by %v for one Secret, want 1", got)
				}
			})
		}
	})
}

// slowFirstSecretRead answers the first read of a whole Secret only once
// release is closed (a worker attributing a found Secret when the manager
// stops), failing it as a real client does if its ctx ended meanwhile.
type slowFirstSecretRead struct {
	client.Client
	reads            *atomic.Int32
	entered, release chan struct{}
}

func (s *slowFirstSecretRead) Get(ctx context.Context, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
	if _, ok := o.(*corev1.Secret); ok && s.reads.Add(1) == 1 {
		close(s.entered)
		<-s.release
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return s.Client.Get(ctx, key, o, opts...)
}

// slowFirstCreate stores every create, the first one only once release is
// closed (a create under way when the manager stops).
type slowFirstCreate struct {
	client.Client
	creates          *atomic.Int32
	entered, release chan struct{}
}

func (s *slowFirstCreate) Create(ctx context.Context, o client.Object, opts ...client.CreateOption) error {
	if s.creates.Add(1) == 1 {
		close(s.entered)
		<-s.release
	}
	return s.Client.Create(ctx, o, opts...)
}

// builtSecret is the bootstrap Secret an admission builds for mut before it
// hands the write off: certificate included.
func builtSecret(t *testing.T, mut *Mutation, id string) *corev1.Secret {
	t.Helper()
	cert, err := stubIssuer{}.Issue(context.Background(), certRequest(mut.CommonName, mut.KeyAlgorithm, 0))
	if err != nil {
		t.Fatal(err)
	}
	built, err := BootstrapSecret("app", "fsm", id, cert, mut.Bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// TestRecordOfStoredPodNotExpired: once the writer has seen a pod stored,
// its record is the pod's until written, however late the writer gets to
// it (a backlog longer than the TTL): the sweep does not drop it (which
// counted it as a pod that never appeared and left repair to sign a second
// certificate), and the shutdown flush still writes it. A record whose pod
// was never seen still expires.
func TestRecordOfStoredPodNotExpired(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	pending := NewPendingSecrets(0)
	pending.now = func() time.Time { return now }
	w := &secretWriter{pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	for _, id := range []string{"u-stored", "u-never"} {
		mut, _ := storedInjectedPod(t, id)
		if !pending.add("app", id, mut, nil) {
			t.Fatal("store closed")
		}
	}
	stored := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "p", Labels: map[string]string{ProxyUUIDLabel: "u-stored"}}}
	w.podCreated(ctx, event.TypedCreateEvent[client.Object]{Object: stored}, q)
	if q.Len() != 1 {
		t.Fatalf("queued %d, want the stored pod's Secret at once", q.Len())
	}

	now = now.Add(DefaultOrphanGracePeriod + time.Second) // the writer is behind
	if n := pending.expire(); n != 1 {
		t.Errorf("expire() = %d, want 1 (the record whose pod never appeared)", n)
	}
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("u-stored")}
	if _, ok := pending.get(key, false); !ok {
		t.Error("the stored pod's record is gone")
	}
	left := pending.close()
	if _, ok := left[key]; !ok || len(left) != 1 {
		t.Errorf("the shutdown flush gets %v, want only the stored pod's record", left)
	}
}

// TestCountFoundAfterReissue: a late record's built Secret found written is
// the admission's abandoned create if it holds the built certificate, and
// also if a root rotation re-issued that certificate since (the trust
// controller rewrites repo_cert.pem, repo_key.pem and ca_cert.pem): the
// Secret was then created before any replica's repair can create one, at the
// earliest DefaultRepairDelay after the pod was stored. Only another
// writer's Secret, or one whose pod this writer never saw (the shutdown
// flush) with another certificate, counts as found.
func TestCountFoundAfterReissue(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reissued   bool          // the stored certificate is not the built one
		createdIn  time.Duration // the Secret's creation after the pod's
		flush      bool          // the shutdown flush finds it; the pod never seen
		wantLanded float64       // written_total{admission}
		wantFound  float64       // found_written_total{controller}
	}{
		{name: "the built certificate", createdIn: time.Second, wantLanded: 1},
		{name: "re-issued since, created before a repair could be", reissued: true, createdIn: time.Second, wantLanded: 1},
		{name: "re-issued since, created in the same second as the pod", reissued: true, wantLanded: 1},
		{name: "another certificate, created by a repair", reissued: true, createdIn: DefaultRepairDelay, wantFound: 1},
		{name: "the built certificate, found by the flush", flush: true, createdIn: time.Second, wantLanded: 1},
		{name: "another certificate, found by the flush: the pod never seen", reissued: true, flush: true, createdIn: time.Second, wantFound: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "u-reissued"
			ctx := context.Background()
			mut, cl := storedInjectedPod(t, id)
			built := builtSecret(t, mut, id)
			podCreated := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
			stored := built.DeepCopy()
			stored.CreationTimestamp = metav1.NewTime(podCreated.Add(tc.createdIn))
			if tc.reissued {
				stored.Data[RepoCertKey], stored.Data[RepoKeyKey] = []byte("re-issued cert"), []byte("re-issued key")
			}
			if err := cl.Create(ctx, stored); err != nil {
				t.Fatal(err)
			}
			pending := NewPendingSecrets(0)
			h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
			if err != nil {
				t.Fatal(err)
			}
			if !pending.add("app", id, mut, built) {
				t.Fatal("store closed")
			}
			late := func() time.Time { return time.Now().Add(DefaultRepairDelay) }
			w := &secretWriter{cache: cl, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: late}
			landed0 := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission))
			found0 := testutil.ToFloat64(secretsFound.WithLabelValues(writtenByController))
			key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
			if tc.flush {
				sctx, cancel := context.WithCancel(ctx)
				cancel()
				if err := w.runPending(sctx); err != nil {
					t.Fatal(err)
				}
			} else {
				q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
				defer q.ShutDown()
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "p", CreationTimestamp: podCreated, Labels: map[string]string{ProxyUUIDLabel: id}}}
				w.podCreated(ctx, event.TypedCreateEvent[client.Object]{Object: pod}, q)
				if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
					t.Fatal(err)
				}
			}
			if got := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission)) - landed0; got != tc.wantLanded {
				t.Errorf("written_total{writer=\"admission\"} rose by %v, want %v", got, tc.wantLanded)
			}
			if got := testutil.ToFloat64(secretsFound.WithLabelValues(writtenByController)) - found0; got != tc.wantFound {
				t.Errorf("found_written_total{writer=\"controller\"} rose by %v, want %v", got, tc.wantFound)
			}
		})
	}
}
