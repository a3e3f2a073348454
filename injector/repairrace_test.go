package injector

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestRepairBeatsLateOwnerWrite: the replica that admitted a pod holds its
// record, but its write comes later than DefaultRepairDelay after the pod
// was stored (an overloaded apiserver or CA), and another replica's repair
// rebuilds the Secret first, with a certificate of its own, counted as
// written{repair}. The first create wins and stays; the owner's write finds
// it (in its cache, or by AlreadyExists) and is no write: the Secret is not
// counted a second time (as the admission's, a record the admission built
// taking any Secret found for its own abandoned create, which it is not
// here: another certificate), and a record with no certificate yet signs
// none once the Secret is there.
func TestRepairBeatsLateOwnerWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// built: the record carries the Secret the admission built (a
		// hand-off as slow); else the controller signs (controller writer,
		// busy hand-off).
		built bool
		// cached: the owner's cache shows the repair's Secret; else only
		// the API server has it.
		cached bool
		// during: the repair's create lands while the owner signs, after
		// any check of the owner's (the create then answers AlreadyExists).
		during     bool
		wantIssued int32
		// wantFound: the owner counts its write as lost to another writer
		// (its certificate discarded).
		wantFound float64
	}{
		{name: "built, repair in the cache", built: true, cached: true, wantFound: 1},
		{name: "built, repair not in the cache yet", built: true, wantFound: 1},
		{name: "not built, repair not in the cache yet: no certificate signed", wantIssued: 0},
		{name: "not built, repair lands while the owner signs", during: true, wantIssued: 1, wantFound: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "u-repaired"
			ctx := context.Background()
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
			if err != nil {
				t.Fatal(err)
			}
			pod := mut.Pod.DeepCopy()
			pod.Namespace, pod.Name, pod.UID = "app", "p", "uid-p"
			// The repair's Secret: same name and identity, its own
			// certificate.
			repaired := builtSecret(t, mut, id)
			repaired.Data[RepoCertKey] = []byte("certificate signed by the repair")
			index := func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }
			// The API server, as the owner's live client sees it.
			api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("app", nil), pod).
				WithIndex(metadataOf(podKind), podUUIDIndex, index).Build()
			if !tc.during {
				if err := api.Create(ctx, repaired.DeepCopy()); err != nil {
					t.Fatal(err)
				}
			}
			cacheObjs := []client.Object{monitoredNamespace("app", nil), pod.DeepCopy()}
			if tc.cached {
				cacheObjs = append(cacheObjs, repaired.DeepCopy())
			}
			cache := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(cacheObjs...).
				WithIndex(metadataOf(podKind), podUUIDIndex, index).Build()
			issuer := &countingIssuer{}
			var live client.Client = api
			if tc.during {
				live = interceptor.NewClient(api, interceptor.Funcs{
					Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
						if err := c.Create(ctx, repaired.DeepCopy()); err != nil {
							t.Fatal(err)
						}
						return c.Create(ctx, o, opts...)
					},
				})
			}
			h, err := NewHandler(Options{Client: live, Namespaces: cache, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: NewPendingSecrets(0)})
			if err != nil {
				t.Fatal(err)
			}
			pending := h.opts.Pending
			// Admitted well over DefaultRepairDelay ago.
			pending.now = func() time.Time { return time.Now().Add(-3 * DefaultRepairDelay) }
			var built *corev1.Secret
			if tc.built {
				built = builtSecret(t, mut, id)
			}
			if !pending.add("app", id, mut, built) {
				t.Fatal("store closed")
			}
			key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
			if !pending.markStored(key, pod.CreationTimestamp) {
				t.Fatal("record expired")
			}
			w := &secretWriter{cache: cache, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
			before := map[string]float64{}
			for _, by := range []string{writtenByAdmission, writtenByController, writtenByRepair} {
				before[by] = testutil.ToFloat64(secretsWritten.WithLabelValues(by))
			}
			foundBefore := testutil.ToFloat64(secretsFound.WithLabelValues(writtenByController))
			for range 2 { // a second reconcile of the same key counts nothing more
				if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
					t.Fatal(err)
				}
			}
			// The repair counted the Secret (written{repair}, in its own
			// process); here nothing is written.
			for by, b := range before {
				if got := testutil.ToFloat64(secretsWritten.WithLabelValues(by)) - b; got != 0 {
					t.Errorf("written_total{writer=%q} rose by %v for a Secret another replica's repair wrote", by, got)
				}
			}
			if got := testutil.ToFloat64(secretsFound.WithLabelValues(writtenByController)) - foundBefore; got != tc.wantFound {
				t.Errorf("found_written_total{writer=controller} rose by %v, want %v", got, tc.wantFound)
			}
			if got := issuer.issued.Load(); got != tc.wantIssued {
				t.Errorf("%d certificate(s) signed by the owner, want %d", got, tc.wantIssued)
			}
			if pending.Len() != 0 {
				t.Errorf("%d record(s) left", pending.Len())
			}
			// The one Secret is the repair's, whole: its certificate is for
			// the pod's uuid (the repair rebuilt it from the pod).
			s := &corev1.Secret{}
			if err := api.Get(ctx, key, s); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.Data[RepoCertKey], repaired.Data[RepoCertKey]) || !bytes.Equal(s.Data[BootstrapConfigKey], repaired.Data[BootstrapConfigKey]) {
				t.Errorf("the Secret is not the repair's: %s", s.Data[RepoCertKey])
			}
			list := &corev1.SecretList{}
			if err := api.List(ctx, list, client.InNamespace("app")); err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 {
				t.Errorf("%d Secrets in the namespace, want 1", len(list.Items))
			}
		})
	}
}

// TestRepairLosesToLateOwnerWrite: the other way round, the admitting
// replica's late write lands while the repair signs: the repair's create
// answers AlreadyExists, its certificate is discarded and counted as such,
// and the Secret is the owner's (counted there), not the repair's too.
func TestRepairLosesToLateOwnerWrite(t *testing.T) {
	const id = "u-owner-first"
	ctx := context.Background()
	mut, cl := storedInjectedPod(t, id)
	owners := builtSecret(t, mut, id)
	live := interceptor.NewClient(cl.(client.WithWatch), interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			if err := c.Create(ctx, owners.DeepCopy()); err != nil {
				t.Fatal(err)
			}
			return c.Create(ctx, o, opts...)
		},
	})
	issuer := &countingIssuer{}
	h, err := NewHandler(Options{Client: live, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system"})
	if err != nil {
		t.Fatal(err)
	}
	w := &secretWriter{cache: cl, h: h, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	written, found := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByRepair)), testutil.ToFloat64(secretsFound.WithLabelValues(writtenByRepair))
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
	if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if issuer.issued.Load() != 1 {
		t.Fatalf("the repair signed %d certificate(s), want 1 (nothing was there when it asked)", issuer.issued.Load())
	}
	if got := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByRepair)) - written; got != 0 {
		t.Errorf("written_total{writer=repair} rose by %v for a Secret the owner wrote", got)
	}
	if got := testutil.ToFloat64(secretsFound.WithLabelValues(writtenByRepair)) - found; got != 1 {
		t.Errorf("found_written_total{writer=repair} rose by %v, want 1", got)
	}
	s := &corev1.Secret{}
	if err := cl.Get(ctx, key, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Data[RepoCertKey], owners.Data[RepoCertKey]) {
		t.Error("the Secret is not the owner's")
	}
}
