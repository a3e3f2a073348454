package injector

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kfake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
)

// A ServiceAccount name is a DNS subdomain and may hold dots; FSM v1.5.1's
// control plane splits a sidecar's identity <serviceaccount>.<namespace> on
// "." (identity.ToK8sServiceAccount), so ServiceAccount bookstore.bookbuyer
// in namespace evil reads as ServiceAccount bookstore of namespace bookbuyer.
// The admission denies such a pod (TestHandlerHTTP, the e2e testDenied); the
// tests here cover the paths that sign a pod certificate without an
// admission, for a pod FSM's injector meshed before the switch.
const dottedSA = "bookstore.bookbuyer"

// caCountingIssuer counts the certificates it signs.
type caCountingIssuer struct {
	certs.Issuer
	issued atomic.Int64 // Sync's workers issue concurrently
}

func (c *caCountingIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	c.issued.Add(1)
	return c.Issuer.Issue(ctx, req)
}

// fsmInjectedPod is a pod as FSM's injector meshed it: injected for
// ServiceAccount sa in namespace ns with uuid id (Mutate refuses a dotted
// name, so the pod is injected for another and given sa afterwards, which is
// what FSM stored).
func fsmInjectedPod(t *testing.T, ns, sa, id string) *corev1.Pod {
	t.Helper()
	mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace(ns, nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: id})
	if err != nil {
		t.Fatal(err)
	}
	pod := mut.Pod.DeepCopy()
	pod.Namespace, pod.Name, pod.UID = ns, "p", "pod-uid"
	pod.Spec.ServiceAccountName = sa
	return pod
}

// TestRepairRefusesDottedServiceAccount: the writer's repair (either writer
// mode) rebuilds a stored injected pod's missing bootstrap Secret. For a pod
// FSM meshed with a dotted ServiceAccount it signs nothing, writes nothing and
// returns no error (a retry changes nothing: no requeue loop); the same pod
// with a plain name is repaired.
func TestRepairRefusesDottedServiceAccount(t *testing.T) {
	for _, tc := range []struct {
		name, sa string
		want     int
	}{
		{name: "plain ServiceAccount: repaired", sa: "bookstore", want: 1},
		{name: "ServiceAccount with a dot: nothing signed or written", sa: dottedSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "00000000-0000-4000-8000-000000000001"
			cns, secrets, res := repairOnce(t, fsmInjectedPod(t, "evil", tc.sa, id), id)
			if res != (reconcile.Result{}) {
				t.Fatalf("reconcile: %+v; want done (a retry changes nothing)", res)
			}
			if len(cns) != tc.want || len(secrets) != tc.want {
				t.Fatalf("signed %d certificate(s) %q and wrote %d Secret(s) for ServiceAccount %q; want %d",
					len(cns), strings.Join(cns, ", "), len(secrets), tc.sa, tc.want)
			}
		})
	}
}

// TestTrustControllerLeavesDottedServiceAccount: root rotation re-issues the
// bootstrap certificates the retiring root signed, with the same CN. The
// Secret FSM's injector wrote for a dotted ServiceAccount is not re-issued:
// the pass counts it invalid (no failure, so no retry loop), still brings its
// cacert.pem onto the new bundle, leaves its certificate and key as they
// are, and the old root's drop waits for it, saying why; a plain Secret
// beside it is re-issued.
func TestTrustControllerLeavesDottedServiceAccount(t *testing.T) {
	ctx := context.Background()
	ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(id, sa string) *corev1.Secret {
		cn := CommonName(id, sa, "evil", "cluster.local")
		cert, err := ca.Issue(ctx, certRequest(cn, "", time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		s, err := BootstrapSecret("evil", "fsm", id, cert, BootstrapConfig{NodeID: cn})
		if err != nil {
			t.Fatal(err)
		}
		s.ResourceVersion = "1"
		return s
	}
	dotted, plain := secret("u1", dottedSA), secret("u2", "bookstore")
	old := ca.Active()
	if err := ca.AddNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ca.ActivateNextRoot(ctx); err != nil {
		t.Fatal(err)
	}
	cs := kfake.NewClientset(dotted, plain)
	issuer := &caCountingIssuer{Issuer: ca}
	var log leveledLog
	c, err := NewTrustController(TrustControllerOptions{Client: cs, Issuer: issuer, Rotation: ca, MeshName: "fsm", Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	invalid := testutil.ToFloat64(trustFailures.WithLabelValues("invalid"))
	res, err := c.Sync(ctx, ts)
	if err != nil {
		t.Fatalf("a Secret left for a reason a retry cannot change failed the pass: %v", err)
	}
	if res != (SyncResult{Scanned: 2, Updated: 2, Reissued: 1, Invalid: 1}) || issuer.issued.Load() != 1 {
		t.Errorf("result %+v, %d certificate(s) signed; want 2 scanned and updated, 1 re-issued, 1 invalid, 1 signed", res, issuer.issued.Load())
	}
	if d := testutil.ToFloat64(trustFailures.WithLabelValues("invalid")) - invalid; d != 1 {
		t.Errorf("invalid counter went up by %v, want 1", d)
	}
	// One error line for the one Secret left, saying what was done: it was
	// logged twice (once as its cacert.pem was updated, once by the pass).
	if errs, _ := log.lines(); len(errs) != 1 || !strings.Contains(errs[0], "certificate left as it is") || !strings.Contains(errs[0], dotted.Name) {
		t.Errorf("error lines %q, want one naming the Secret and saying its certificate was left as it is", errs)
	}
	got, err := cs.CoreV1().Secrets("evil").Get(ctx, dotted.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data[RepoCertKey], dotted.Data[RepoCertKey]) || !bytes.Equal(got.Data[RepoKeyKey], dotted.Data[RepoKeyKey]) {
		t.Error("the dotted ServiceAccount's certificate or key was replaced")
	}
	if !bytes.Equal(got.Data[CACertKey], ts.Bundle.PEM()) {
		t.Error("the dotted ServiceAccount's cacert.pem does not follow the bundle")
	}
	if _, err := PlanTrust(got, ts, "", time.Hour, time.Now()); err == nil || !strings.Contains(err.Error(), `spec.serviceAccountName "bookstore.bookbuyer"`) {
		t.Errorf("plan for the dotted Secret: %v, want the ServiceAccount named", err)
	}
	if err := RetiringRootCheck(cs)(ctx, old); err == nil || !strings.Contains(err.Error(), "1 of 2 bootstrap Secret(s)") ||
		!strings.Contains(err.Error(), "evil/"+dotted.Name) || !strings.Contains(err.Error(), "wait for their pod to be deleted or re-created") {
		t.Errorf("retiring root check: %v", err)
	}
}
