package chart

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/internal/transient"
)

// CRDFieldManager is the server-side apply manager of `fsm-webhooks install-crds`.
const CRDFieldManager = "fsm-webhooks-install-crds"

// ApplyCRDs brings the cluster's CRDs to the chart's, which Helm never does
// for crds/ on upgrade. Server-side apply with forced ownership takes over
// the fields Helm or FSM's bootstrap set, and leaves alone what the chart's
// CRDs do not set: spec.conversion, which the converter keeps (its caBundle).
// It returns once every CRD is Established. An apiserver that is briefly
// unavailable (restarting during an upgrade, throttling, a lost
// connection) is retried until ctx ends, which bounds the whole call;
// anything else fails at once.
func ApplyCRDs(ctx context.Context, c client.Client) error {
	crds, err := CRDs()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		crd.SetGroupVersionKind(metaCRD)
		if crd.Spec.Conversion != nil {
			return fmt.Errorf("embedded CRD %s sets spec.conversion: the converter owns that field", crd.Name)
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
		if err != nil {
			return fmt.Errorf("embedded CRD %s: %w", crd.Name, err)
		}
		ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
		err = retryTransient(ctx, func(ctx context.Context) (bool, error) {
			return true, c.Apply(ctx, ac, client.FieldOwner(CRDFieldManager), client.ForceOwnership)
		})
		if err != nil {
			return fmt.Errorf("applying CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		name := crd.Name
		err := retryTransient(ctx, func(ctx context.Context) (bool, error) {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
				return false, err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established: %w", name, err)
		}
	}
	return nil
}

// retryTransient calls step every 200 ms until it is done, fails with an
// error that is not transient, or ctx ends; then the error names the last
// transient failure, if any, beside ctx's.
func retryTransient(ctx context.Context, step func(context.Context) (bool, error)) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		done, err := step(ctx)
		if err != nil && transient.Is(err) {
			last = err
			return false, nil
		}
		return done && err == nil, err
	})
	if err != nil && last != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return err
}

var metaCRD = apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition")
