package chart

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestApplyCRDsRetriesTransientErrors: the pre-upgrade hook runs while the
// control plane may itself be upgrading; an apiserver that refuses a
// connection or answers 503/429 for a moment is retried until the
// context ends, while a refusal for good (Forbidden) fails at once. The
// first failed read used to fail the hook.
func TestApplyCRDsRetriesTransientErrors(t *testing.T) {
	crdGR := schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}
	refused := &netOpError{syscall.ECONNREFUSED}
	tests := map[string]struct {
		applyErrs, getErrs []error
		wantErr            string
	}{
		"unavailable, throttled, refused, then fine": {
			applyErrs: []error{apierrors.NewServiceUnavailable("restarting"), apierrors.NewTooManyRequests("slow down", 1)},
			getErrs:   []error{refused, apierrors.NewInternalError(errors.New("etcd leader changed"))},
		},
		"forbidden fails at once": {
			applyErrs: []error{apierrors.NewForbidden(crdGR, "meshconfigs.config.flomesh.io", errors.New("no RBAC"))},
			wantErr:   "applying CRD meshconfigs.config.flomesh.io: customresourcedefinitions.apiextensions.k8s.io \"meshconfigs.config.flomesh.io\" is forbidden",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s := runtime.NewScheme()
			if err := apiextensionsv1.AddToScheme(s); err != nil {
				t.Fatal(err)
			}
			applies, gets := 0, 0
			c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).Build(), interceptor.Funcs{
				Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
					applies++
					if applies <= len(tc.applyErrs) {
						return tc.applyErrs[applies-1]
					}
					return nil
				},
				Get: func(_ context.Context, _ client.WithWatch, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
					gets++
					if gets <= len(tc.getErrs) {
						return tc.getErrs[gets-1]
					}
					crd := obj.(*apiextensionsv1.CustomResourceDefinition)
					crd.Status.Conditions = []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue}}
					return nil
				},
			})
			err := ApplyCRDs(ctx, c)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ApplyCRDs: %v", err)
				}
				if want := len(tc.applyErrs) + 1; applies != want {
					t.Errorf("%d applies; want %d", applies, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v; want one containing %q", err, tc.wantErr)
			}
			if applies != 1 {
				t.Errorf("%d applies of a forbidden CRD; want 1", applies)
			}
		})
	}
}

// TestApplyCRDsNamesTheLastFailure: when the apiserver stays unavailable
// the error says why beside the deadline.
func TestApplyCRDsNamesTheLastFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
			return apierrors.NewServiceUnavailable("apiserver restarting")
		},
	})
	err := ApplyCRDs(ctx, c)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "apiserver restarting") {
		t.Fatalf("error %v; want the deadline and the last failure", err)
	}
}

// netOpError is a dial refused as the net package reports it.
type netOpError struct{ errno syscall.Errno }

func (e *netOpError) Error() string { return "dial tcp 10.96.0.1:443: connect: " + e.errno.Error() }
func (e *netOpError) Unwrap() error { return e.errno }
