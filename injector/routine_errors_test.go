package injector

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

// leveledLog keeps every line a logger writes, by level: funcr writes an
// error line without the "level" key an info line starts with.
type leveledLog struct {
	mu           sync.Mutex
	errors, info []string
}

func (l *leveledLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if strings.HasPrefix(args, `"level"=`) {
			l.info = append(l.info, prefix+" "+args)
			return
		}
		l.errors = append(l.errors, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (l *leveledLog) lines() (errors, info []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errors...), append([]string(nil), l.info...)
}

// liveCtxClient is base as client-go behaves for reads: a request whose
// context is done fails with the context's error, else answer decides.
func liveCtxClient(base client.Client, answer error) client.Client {
	fail := func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return answer
	}
	return interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
			if err := fail(ctx); err != nil {
				return err
			}
			return c.Get(ctx, key, o, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, opts ...client.ListOption) error {
			if err := fail(ctx); err != nil {
				return err
			}
			return c.List(ctx, l, opts...)
		},
	})
}

// TestReconcilersStopQuietly: when serve stops, the manager cancels the
// context of every reconcile under way; the API reads those make fail with
// it. controller-runtime logs any error a reconcile returns as "Reconciler
// error", at error level with a stack trace: a line on every rollout that
// nobody has to act on. A reconcile cut short by the stop returns none;
// any other failure is still returned (and retried).
func TestReconcilersStopQuietly(t *testing.T) {
	stopped, stop := context.WithCancel(context.Background())
	stop()
	unavailable := apierrors.NewServiceUnavailable("etcd leader changed")
	// Each reconciler: once stopping, once against an apiserver that
	// fails (the control: still an error).
	cases := []struct {
		name    string
		ctx     context.Context
		answer  error
		wantErr bool
	}{
		{"stopping", stopped, nil, false},
		{"apiserver unavailable", context.Background(), unavailable, true},
	}

	t.Run("cleanup", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// An orphan past its grace: the API server is asked for its pod.
				cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(bootstrapSecret()).
					WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
					Build()
				var log leveledLog
				r := newSecretReconciler(cl, liveCtxClient(cl, tc.answer), SecretControllerOptions{MeshName: "fsm", GracePeriod: DefaultOrphanGracePeriod, Logger: log.logger()})
				r.now = func() time.Time { return secretCreated.Add(time.Hour) }
				_, err := r.Reconcile(tc.ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(bootstrapSecret())})
				quietStop(t, &log, err, tc.wantErr, "controller")
				if err := cl.Get(context.Background(), client.ObjectKeyFromObject(bootstrapSecret()), &corev1.Secret{}); err != nil {
					t.Errorf("the Secret went without the API server's word: %v", err)
				}
			})
		}
	})

	t.Run("writer repair", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				const id = "u-repair"
				_, base := storedInjectedPod(t, id)
				var log leveledLog
				h, err := NewHandler(Options{Client: liveCtxClient(base, tc.answer), Namespaces: base, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system"})
				if err != nil {
					t.Fatal(err)
				}
				w := &secretWriter{cache: base, h: h, repairDelay: DefaultRepairDelay, log: log.logger(), now: time.Now}
				key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
				_, err = w.Reconcile(tc.ctx, reconcile.Request{NamespacedName: key})
				quietStop(t, &log, err, tc.wantErr, "writer")
			})
		}
	})
}

// quietStop checks a Reconcile's answer: an error only when one is wanted,
// no error line either way, and, when stopping, one info line saying who
// stops and why.
func quietStop(t *testing.T, log *leveledLog, err error, wantErr bool, who string) {
	t.Helper()
	if (err != nil) != wantErr {
		t.Fatalf("Reconcile: %v, want an error: %v", err, wantErr)
	}
	errs, info := log.lines()
	if len(errs) > 0 {
		t.Errorf("error lines: %q", errs)
	}
	if !wantErr && (len(info) != 1 || !strings.Contains(info[0], "stopping") || !strings.Contains(info[0], "context canceled")) {
		t.Errorf("info lines %q, want one saying the %s is stopping, with the reason", info, who)
	}
}

// TestWriterNamespaceTerminating: a pod stored a moment before its namespace
// began terminating gets no Secret: the apiserver refuses every create in
// that namespace, and the namespace controller deletes the pod. The writer
// says so at info and drops the record, instead of returning an error that
// controller-runtime logs (with a stack trace) and retries until the pod is
// gone, and the shutdown flush tries once more.
func TestWriterNamespaceTerminating(t *testing.T) {
	const id = "u-terminating"
	mut, base := storedInjectedPod(t, id)
	refused := apierrors.NewForbidden(corev1.Resource("secrets"), BootstrapSecretName(id),
		errorString("unable to create new content in namespace app because it is being terminated"))
	refused.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Field: "metadata.namespace", Message: "namespace app is being terminated"}}
	creates := 0
	cl := interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			creates++
			return refused
		},
	})
	pending := NewPendingSecrets(0)
	h, err := NewHandler(Options{Client: cl, Namespaces: base, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending})
	if err != nil {
		t.Fatal(err)
	}
	if !pending.add("app", id, mut, nil) {
		t.Fatal("store closed")
	}
	var log leveledLog
	w := &secretWriter{cache: base, h: h, pending: pending, repairDelay: DefaultRepairDelay, log: log.logger(), now: time.Now}
	key := types.NamespacedName{Namespace: "app", Name: BootstrapSecretName(id)}
	if _, err := w.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatalf("Reconcile: %v; want none (controller-runtime logs it as an error and retries)", err)
	}
	if creates != 1 {
		t.Errorf("%d creates, want 1", creates)
	}
	errs, info := log.lines()
	if len(errs) > 0 {
		t.Errorf("error lines: %q", errs)
	}
	if len(info) != 1 || !strings.Contains(info[0], "namespace is being deleted") {
		t.Errorf("info lines %q, want one saying the namespace is being deleted", info)
	}
	if _, ok := pending.take(key); ok {
		t.Error("the record is still held: the shutdown flush would try to write it again")
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// cancellingRotation is a RotationReader whose read is cut short by the
// process stopping: it cancels the controller's context and fails with it,
// as client-go does.
type cancellingRotation struct{ stop context.CancelFunc }

func (r cancellingRotation) RotationStatus(ctx context.Context) (rootrotation.Status, error) {
	r.stop()
	return rootrotation.Status{}, fmt.Errorf("reading CA Secret: %w", ctx.Err())
}

// TestTrustControllerStopsQuietly: serve stopping in the middle of a trust
// pass (a root rotation re-issues every bootstrap Secret, rate limited: a
// pass can last minutes) fails each Secret in flight, and the trust read,
// with the cancellation. Neither is an error line or a counted failure.
func TestTrustControllerStopsQuietly(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{Algorithm: certs.ECDSAP256})
	cn := CommonName("u1", "web", "app", "cluster.local")
	cert, err := ca.Issue(context.Background(), certRequest(cn, "", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := BootstrapSecret("app", "fsm", "u1", cert, BootstrapConfig{NodeID: cn})
	if err != nil {
		t.Fatal(err)
	}
	s.ResourceVersion = "1"
	// A new root: the Secret's cacert.pem must follow it.
	if err := ca.AddNextRoot(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Run("mid-pass", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		cs := k8sfake.NewClientset(s.DeepCopy())
		cs.PrependReactor("patch", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
			stop() // SIGTERM while the write is under way
			return true, nil, fmt.Errorf("Patch %q: %w", s.Name, context.Canceled)
		})
		var log leveledLog
		c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: ca, MeshName: "fsm", Logger: log.logger()})
		if err != nil {
			t.Fatal(err)
		}
		failed := testutil.ToFloat64(trustFailures.WithLabelValues("update"))
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		errs, info := log.lines()
		if len(errs) > 0 {
			t.Errorf("error lines: %q", errs)
		}
		if !slices.ContainsFunc(info, func(l string) bool {
			return strings.Contains(l, "left for the next pass") && strings.Contains(l, "context canceled")
		}) {
			t.Errorf("info lines %q, want one saying the Secret is left for the next pass, with the reason", info)
		}
		if d := testutil.ToFloat64(trustFailures.WithLabelValues("update")) - failed; d != 0 {
			t.Errorf("the stop counted as %v failure(s)", d)
		}
	})

	t.Run("reading the trust", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var log leveledLog
		c, err := NewTrustController(TrustControllerOptions{Client: k8sfake.NewClientset(s.DeepCopy()), Issuer: ca, Rotation: cancellingRotation{stop}, MeshName: "fsm", Logger: log.logger()})
		if err != nil {
			t.Fatal(err)
		}
		failed := testutil.ToFloat64(trustFailures.WithLabelValues("list"))
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if errs, _ := log.lines(); len(errs) > 0 {
			t.Errorf("error lines: %q", errs)
		}
		if d := testutil.ToFloat64(trustFailures.WithLabelValues("list")) - failed; d != 0 {
			t.Errorf("the stop counted as %v failure(s)", d)
		}
	})
}
