package webhooks

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// TestConversionElectionRacesAreInfo: replicas race for the conversion-owner
// Lease when they start together (both create it) and when its holder
// releases it or stops (both take it over). client-go's elector logs the
// loser's AlreadyExists or Conflict at error level, with a stack trace, on
// every install and rollout; nobody has to act on it, the loser follows the
// winner. It is logged at info with the reason. Another error (RBAC) stays
// an error.
func TestConversionElectionRacesAreInfo(t *testing.T) {
	const crd = "gadgets.example.com"
	leases := schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
	name := ConversionLeaseName(crd)
	// The winner's Lease, live for a minute.
	winner := func() *coordinationv1.Lease {
		now := metav1.NewMicroTime(time.Now())
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, ResourceVersion: "2"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("fsm-system/fsm|other"), LeaseDurationSeconds: ptr.To[int32](60),
				AcquireTime: &now, RenewTime: &now},
		}
	}
	// released is a Lease its holder gave up (client-go's ReleaseOnCancel).
	released := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, ResourceVersion: "1"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(""), LeaseDurationSeconds: ptr.To[int32](1),
			AcquireTime: &metav1.MicroTime{Time: time.Now().Add(-time.Hour)}, RenewTime: &metav1.MicroTime{Time: time.Now().Add(-time.Hour)}},
	}
	for _, tc := range []struct {
		name     string
		existing []runtime.Object
		verb     string
		answer   func(cs *fake.Clientset) error
		wantMsg  string
		wantErr  bool
	}{
		{name: "replicas starting together both create the Lease", verb: "create",
			answer: func(cs *fake.Clientset) error {
				if err := cs.Tracker().Add(winner()); err != nil {
					t.Error(err)
				}
				return apierrors.NewAlreadyExists(leases, name)
			},
			wantMsg: "Error initially creating lease lock"},
		{name: "replicas taking over a released Lease", existing: []runtime.Object{released}, verb: "update",
			answer: func(cs *fake.Clientset) error {
				if err := cs.Tracker().Update(coordinationv1.SchemeGroupVersion.WithResource("leases"), winner(), "kube-system"); err != nil {
					t.Error(err)
				}
				return apierrors.NewConflict(leases, name, nil)
			},
			wantMsg: "Failed to update lease"},
		{name: "no RBAC for the Lease: still an error", verb: "get",
			answer: func(*fake.Clientset) error {
				return apierrors.NewForbidden(leases, name, errTest("not allowed"))
			},
			wantMsg: "Error retrieving lease lock", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.existing...)
			var fired atomic.Int32
			cs.PrependReactor(tc.verb, "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if fired.Add(1) > 1 {
					return false, nil, nil
				}
				return true, nil, tc.answer(cs)
			})
			var mu sync.Mutex
			var errs, info []string
			log := funcr.New(func(prefix, args string) {
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(args, `"level"=`) {
					info = append(info, args)
				} else {
					errs = append(errs, args)
				}
			}, funcr.Options{})
			s := &Server{
				opts:        Options{Namespace: "fsm-system", MeshName: "fsm", ConversionLeaseNamespace: "kube-system"},
				client:      cs,
				leaseTiming: leaseTiming{duration: 3 * time.Second, renew: 2 * time.Second, retry: 50 * time.Millisecond},
			}
			h := &hook{s: s, w: Webhook{Registration: Registration{Kind: CRDConversion, Name: crd}}, log: log}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- h.runConversionLease(ctx, func() {}) }()
			// The race lost, and a few campaigns after it.
			deadline := time.Now().Add(10 * time.Second)
			for fired.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if fired.Load() == 0 {
				t.Fatalf("the elector never sent the %s", tc.verb)
			}
			mu.Lock()
			defer mu.Unlock()
			logged := errs
			if !tc.wantErr {
				if len(errs) > 0 {
					t.Errorf("error lines: %q", errs)
				}
				logged = info
			}
			found := false
			for _, l := range logged {
				if strings.Contains(l, tc.wantMsg) && (tc.wantErr || strings.Contains(l, `"reason"=`)) {
					found = true
				}
			}
			if !found {
				t.Errorf("no line %q (error level: %v, with the reason) in %q", tc.wantMsg, tc.wantErr, logged)
			}
		})
	}
}
