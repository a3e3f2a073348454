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
