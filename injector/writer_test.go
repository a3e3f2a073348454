package injector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
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
		{name: "pod finished (its Secret deleted by the cleanup): no repair", pod: podFinished, want: writeNothing},
		{name: "pod finished before its recorded Secret was written", pod: podFinished, pending: true, want: writeNothing},
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
	p.add("app", "a", mut, nil)
	now = now.Add(30 * time.Second)
	p.add("app", "b", &Mutation{CommonName: "cn-b"}, nil)
	keyA := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("a")}
	keyB := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("b")}

	if e, ok := p.get(keyA, false); !ok || e.commonName != "cn-a" || e.proxyUUID != "a" {
		t.Fatalf("get(a) = %+v, %v", e, ok)
	}
	now = now.Add(31 * time.Second) // a is 61 s old, b 31 s
	if p.has(keyA) {
		t.Error("an entry past its TTL is still served")
	}
	if _, ok := p.get(keyA, true); !ok {
		t.Error("an entry past its TTL is not served for a stored pod")
	}
	if !p.has(keyB) {
		t.Error("an entry within its TTL is not served")
	}
	if n := p.expire(); n != 1 || p.Len() != 1 {
		t.Errorf("expire dropped %d, %d left; want 1, 1", n, p.Len())
	}
	p.add("app", "c", &Mutation{CommonName: "cn-c"}, nil)
	now = now.Add(50 * time.Second) // b is 81 s old, c 50 s
	left := p.close()
	if len(left) != 1 || left[types.NamespacedName{Namespace: "app", Name: BootstrapSecretName("c")}].commonName != "cn-c" || p.Len() != 0 {
		t.Errorf("close returned %+v and kept %d; want only c's record, none kept", left, p.Len())
	}
	if p.add("app", "d", &Mutation{}, nil) || p.Len() != 0 {
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
	f.h.opts.SecretWriter = SecretWriterController

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

// countingIssuer is stubIssuer counting what it issues.
type countingIssuer struct {
	stubIssuer
	issued atomic.Int32
}

func (c *countingIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	c.issued.Add(1)
	return c.stubIssuer.Issue(ctx, req)
}

// TestAdmissionWriterHandoff: the admission writer writes a pod's Secret
// itself unless its create outlasts the budget or as many creates are under
// way as it allows; then the Secret is recorded for the writer controller
// (with the certificate already issued, so none is signed twice) and the pod
// is admitted. An error the apiserver answers is not a hand-off.
func TestAdmissionWriterHandoff(t *testing.T) {
	const budget = 50 * time.Millisecond
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "x", errors.New("quota"))
	for _, tc := range []struct {
		name        string
		writer      SecretWriter
		createDelay time.Duration // how long a create takes (it honours its context)
		createErr   error
		slotsTaken  int  // inline slots held by other admissions
		stopped     bool // the writer controller has stopped: its store is closed
		noPending   bool // Options.Pending nil: the admission always writes
		lands       bool // a create the admission stops waiting for lands anyway, as at an apiserver

		wantAllowed  bool
		wantWritten  int    // Secrets the admission's creates stored
		wantPending  bool   // recorded for the controller
		wantBuilt    bool   // ... with the Secret already built
		wantHandoff  string // reason counted, "" for none
		wantIssued   int32
		wantAttempts int // creates the admission sent
		wantCounted  int // rise of written_total{writer="admission"}
	}{
		{name: "a quick create is written in the admission", writer: SecretWriterAdmission,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 1, wantCounted: 1},
		{name: "a create over budget goes to the controller with its Secret built", writer: SecretWriterAdmission, createDelay: 10 * budget,
			wantAllowed: true, wantPending: true, wantBuilt: true, wantHandoff: handoffSlow, wantIssued: 1, wantAttempts: 1},
		{name: "all slots busy: recorded at once, nothing issued or sent", writer: SecretWriterAdmission, slotsTaken: 2,
			wantAllowed: true, wantPending: true, wantHandoff: handoffBusy},
		{name: "one slot of two taken: written in the admission", writer: SecretWriterAdmission, slotsTaken: 1,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 1, wantCounted: 1},
		{name: "an apiserver error is the admission's error, not a hand-off", writer: SecretWriterAdmission, createErr: forbidden,
			wantIssued: 1, wantAttempts: 1},
		{name: "over budget once the writer stopped: the admission waits for it after all", writer: SecretWriterAdmission, createDelay: 3 * budget, stopped: true,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 2, wantCounted: 1},
		{name: "over budget once the writer stopped, the abandoned create landed: counted once", writer: SecretWriterAdmission, createDelay: 3 * budget, stopped: true, lands: true,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 2, wantCounted: 1},
		{name: "busy once the writer stopped: written in the admission", writer: SecretWriterAdmission, slotsTaken: 2, stopped: true,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 1, wantCounted: 1},
		{name: "controller writer: recorded, nothing issued or sent", writer: SecretWriterController, createDelay: 10 * budget,
			wantAllowed: true, wantPending: true},
		{name: "no store: the admission writes however long it takes", writer: SecretWriterAdmission, createDelay: 3 * budget, noPending: true,
			wantAllowed: true, wantWritten: 1, wantIssued: 1, wantAttempts: 1, wantCounted: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("app", nil)).Build()
			var mu sync.Mutex
			var written []*corev1.Secret
			attempts := 0
			cl := interceptor.NewClient(reader, interceptor.Funcs{
				Create: func(ctx context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
					mu.Lock()
					attempts++
					landed := len(written) > 0
					mu.Unlock()
					if landed {
						return apierrors.NewAlreadyExists(corev1.Resource("secrets"), obj.GetName())
					}
					select {
					case <-time.After(tc.createDelay):
					case <-ctx.Done():
						if tc.lands {
							mu.Lock()
							written = append(written, obj.(*corev1.Secret).DeepCopy())
							mu.Unlock()
						}
						return ctx.Err()
					}
					if tc.createErr != nil {
						return tc.createErr
					}
					s := obj.(*corev1.Secret)
					s.ResourceVersion = "1" // what the apiserver fills in
					mu.Lock()
					written = append(written, s)
					mu.Unlock()
					return nil
				},
			})
			issuer := &countingIssuer{}
			var pending *PendingSecrets
			if !tc.noPending {
				pending = NewPendingSecrets(0)
			}
			h, err := NewHandler(Options{Client: cl, Namespaces: reader, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system",
				Pending: pending, SecretWriter: tc.writer, Handoff: SecretHandoff{InFlight: 2, Budget: budget}, NewUUID: seqUUID()})
			if err != nil {
				t.Fatal(err)
			}
			for range tc.slotsTaken {
				h.inline <- struct{}{}
			}
			if tc.stopped {
				pending.close()
			}
			before := map[string]float64{}
			for _, r := range []string{handoffBusy, handoffSlow} {
				before[r] = testutil.ToFloat64(handoffs.WithLabelValues(r))
			}
			countedBefore := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission))

			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(reviewBody(t, nil), &review); err != nil {
				t.Fatal(err)
			}
			resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: *review.Request})

			if resp.Allowed != tc.wantAllowed || (tc.wantAllowed && len(resp.Patch) == 0) {
				t.Fatalf("allowed %v with a %d-byte patch (%v), want allowed %v and a patch", resp.Allowed, len(resp.Patch), resp.Result, tc.wantAllowed)
			}
			if len(written) != tc.wantWritten || attempts != tc.wantAttempts || issuer.issued.Load() != tc.wantIssued {
				t.Errorf("%d Secrets written in %d creates, %d certificates issued; want %d, %d, %d",
					len(written), attempts, issuer.issued.Load(), tc.wantWritten, tc.wantAttempts, tc.wantIssued)
			}
			if got := testutil.ToFloat64(secretsWritten.WithLabelValues(writtenByAdmission)) - countedBefore; got != float64(tc.wantCounted) {
				t.Errorf("written_total{writer=admission} rose by %v, want %d", got, tc.wantCounted)
			}
			for r, b := range before {
				got := testutil.ToFloat64(handoffs.WithLabelValues(r)) - b
				want := 0.0
				if r == tc.wantHandoff {
					want = 1
				}
				if got != want {
					t.Errorf("handoffs{reason=%q} rose by %v, want %v", r, got, want)
				}
			}
			if pending == nil {
				return
			}
			var entry pendingSecret
			for _, e := range pending.entries {
				entry = e
			}
			if (pending.Len() == 1) != tc.wantPending || pending.Len() > 1 {
				t.Fatalf("%d pending records, want recorded %v", pending.Len(), tc.wantPending)
			}
			if (entry.built != nil) != tc.wantBuilt {
				t.Fatalf("recorded with a built Secret: %v, want %v", entry.built != nil, tc.wantBuilt)
			}
			if entry.built != nil {
				// What the controller will create: the Secret as built, not
				// the object the abandoned create filled in.
				if entry.built.ResourceVersion != "" || entry.built.Name != BootstrapSecretName(entry.proxyUUID) ||
					!strings.Contains(string(entry.built.Data[RepoCertKey]), entry.commonName) {
					t.Errorf("recorded Secret %s (resourceVersion %q) does not hold %s's certificate: %q",
						entry.built.Name, entry.built.ResourceVersion, entry.commonName, entry.built.Data[RepoCertKey])
				}
			}
		})
	}
}

// TestWriterCountsLandedCreates: a Secret handed off as slow whose abandoned
// create landed is counted once, as the admission's, whether the writer
// controller sees it in its cache or learns of it from its own create; one
// the controller writes itself is the controller's. The certificate is never
// signed again. Only a Secret the controller created is observed in
// fsm_webhooks_injector_secret_delay_seconds: for one it found, the moment it
// was stored is not known, and the time the writer found it is not it.
func TestWriterCountsLandedCreates(t *testing.T) {
	for _, tc := range []struct {
		name           string
		landed, cached bool // the Secret exists; the controller's cache shows it
		// busy: handed off without a certificate; other: another replica's
		// repair wrote the Secret, not in the controller's cache yet; late:
		// the writer reaches the record after DefaultRepairDelay.
		busy, other, late bool
		wantAdmission     float64
		wantController    float64
		wantCreates       int
		wantIssued        int32
		wantDelays        uint64
	}{
		{name: "landed, in the cache: nothing written", landed: true, cached: true, wantAdmission: 1},
		{name: "landed, not in the cache yet: the create finds it", landed: true, wantAdmission: 1, wantCreates: 1},
		{name: "never landed: the controller writes it", wantController: 1, wantCreates: 1, wantDelays: 1},
		{name: "busy, late, a repair wrote it: the read finds it", busy: true, other: true, late: true},
		{name: "busy: the controller signs and writes it", busy: true, wantController: 1, wantCreates: 1, wantIssued: 1, wantDelays: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "u-landed"
			ctx := context.Background()
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
			if err != nil {
				t.Fatal(err)
			}
			built := builtSecret(t, mut, id)
			pod := mut.Pod.DeepCopy()
			pod.Namespace, pod.Name = "app", "p"
			objs := []client.Object{monitoredNamespace("app", nil), pod}
			if tc.cached {
				objs = append(objs, built.DeepCopy())
			}
			cache := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
				WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
				Build()
			if tc.other {
				objs = append(objs, built.DeepCopy())
			}
			if tc.busy {
				built = nil
			}
			creates := 0
			cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
				WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
				WithInterceptorFuncs(interceptor.Funcs{
					Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
						creates++
						if tc.landed {
							// Stored by the abandoned create; the cache
							// catches up after this answer.
							_ = c.Create(ctx, o, opts...)
							return apierrors.NewAlreadyExists(corev1.Resource("secrets"), o.GetName())
						}
						return c.Create(ctx, o, opts...)
					},
				}).Build()
			issuer := &countingIssuer{}
			pending := NewPendingSecrets(0)
			h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
			if err != nil {
				t.Fatal(err)
			}
			if !pending.add("app", id, mut, built) {
				t.Fatal("store closed")
			}
			w := &secretWriter{cache: cache, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
			if tc.late {
				w.now = func() time.Time { return time.Now().Add(DefaultRepairDelay) }
			}
			before := map[string]float64{}
			for _, by := range []string{writtenByAdmission, writtenByController, writtenByRepair} {
				before[by] = testutil.ToFloat64(secretsWritten.WithLabelValues(by))
			}
			delaysBefore := histogramCount(t, secretDelay)

			key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
			for range 2 { // a second reconcile of the same key counts nothing more
				if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
					t.Fatal(err)
				}
			}

			want := map[string]float64{writtenByAdmission: tc.wantAdmission, writtenByController: tc.wantController}
			for by, b := range before {
				if got := testutil.ToFloat64(secretsWritten.WithLabelValues(by)) - b; got != want[by] {
					t.Errorf("written_total{writer=%q} rose by %v, want %v", by, got, want[by])
				}
			}
			if creates != tc.wantCreates || issuer.issued.Load() != tc.wantIssued || pending.Len() != 0 {
				t.Errorf("%d creates, %d certificates issued, %d records left; want %d, %d, 0", creates, issuer.issued.Load(), pending.Len(), tc.wantCreates, tc.wantIssued)
			}
			if got := histogramCount(t, secretDelay) - delaysBefore; got != tc.wantDelays {
				t.Errorf("fsm_webhooks_injector_secret_delay_seconds observed %d time(s), want %d", got, tc.wantDelays)
			}
		})
	}
}

// histogramCount is how many observations h holds.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestWriterFlushesRecordsAtShutdown: the records left when the writer stops
// are all written, several at once (at most secretWorkers): one after the
// other, 64 creates of 200 ms would outlast flushTimeout and leave pods
// without their Secret, with no replica of ours left to repair them when the
// mesh is handed back to FSM.
func TestWriterFlushesRecordsAtShutdown(t *testing.T) {
	const records = 128
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	created := map[string]bool{}
	cl := interceptor.NewClient(fake.NewClientBuilder().WithScheme(testScheme(t)).Build(), interceptor.Funcs{
		Create: func(ctx context.Context, _ client.WithWatch, o client.Object, _ ...client.CreateOption) error {
			mu.Lock()
			inFlight++
			maxInFlight = max(maxInFlight, inFlight)
			mu.Unlock()
			defer func() {
				mu.Lock()
				inFlight--
				mu.Unlock()
			}()
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			created[o.GetName()] = true
			mu.Unlock()
			return nil
		},
	})
	pending := NewPendingSecrets(0)
	h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
	if err != nil {
		t.Fatal(err)
	}
	for i := range records {
		id := fmt.Sprintf("u-%d", i)
		mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
		if err != nil {
			t.Fatal(err)
		}
		var built *corev1.Secret
		if i%2 == 0 { // half with their certificate issued by the admission
			cert, err := stubIssuer{}.Issue(context.Background(), certRequest(mut.CommonName, mut.KeyAlgorithm, 0))
			if err != nil {
				t.Fatal(err)
			}
			if built, err = BootstrapSecret("app", "fsm", id, cert, mut.Bootstrap); err != nil {
				t.Fatal(err)
			}
		}
		pending.add("app", id, mut, built)
	}
	w := &secretWriter{cache: cl, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the manager is stopping
	if err := w.runPending(ctx); err != nil {
		t.Fatal(err)
	}
	if len(created) != records {
		t.Errorf("%d of %d recorded Secrets written at shutdown", len(created), records)
	}
	if maxInFlight < 2 || maxInFlight > secretWorkers {
		t.Errorf("at most %d creates at once, want 2 to %d", maxInFlight, secretWorkers)
	}
	if pending.add("app", "late", &Mutation{}, nil) {
		t.Error("the store takes records after the writer stopped")
	}
}
