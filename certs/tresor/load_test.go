package tresor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestLoadRetriesTransientErrors: a replica starting while the apiserver
// answers one request with a transient error (an etcd leader change: 500;
// overload: 503 without Retry-After, which client-go does not retry) still
// comes up with the mesh CA, where it used to return the error from serve
// and crash-loop. A permanent error still fails at once.
func TestLoadRetriesTransientErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	for _, tc := range []struct {
		name      string
		verb      string
		err       error
		wantErr   bool
		wantCalls int32 // requests of verb, the failed one included
	}{
		{"get 500 leader changed", "get", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), false, 2},
		{"get 503", "get", apierrors.NewServiceUnavailable("the server is currently unable to handle the request"), false, 2},
		{"create 500", "create", apierrors.NewInternalError(errors.New("etcdserver: request timed out")), false, 2},
		{"create timeout", "create", apierrors.NewServerTimeout(gr, "create", 1), false, 2},
		{"get forbidden", "get", apierrors.NewForbidden(gr, "fsm-ca-bundle", errors.New("RBAC")), true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var failed atomic.Bool
			var calls atomic.Int32
			cs.PrependReactor(tc.verb, "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls.Add(1)
				if failed.CompareAndSwap(false, true) {
					return true, nil, tc.err
				}
				return false, nil, nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s := &Store{Client: cs, Namespace: "fsm-system"}
			st, err := load(ctx, logr.Discard(), s.Ensure)
			if tc.wantErr {
				if !apierrors.IsForbidden(err) {
					t.Fatalf("load = %v, want the Forbidden at once", err)
				}
			} else if err != nil || st == nil || st.Authority == nil {
				t.Fatalf("one transient %s error stops the CA from loading: %v", tc.verb, err)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d %s requests, want %d", got, tc.verb, tc.wantCalls)
			}
		})
	}
}
