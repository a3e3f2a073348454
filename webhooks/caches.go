package webhooks

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/internal/transient"
)

// CachesSynced registers now, before the cache starts, an informer for each
// of objs (the kinds a webhook's handlers read through c) and returns the
// check for Webhook.Synced: nil once every one of them has synced.
//
// Why both halves: controller-runtime creates an informer at the first read
// of its kind and blocks that read until the informer has synced. A replica
// that turned Ready before its first admission therefore made the admission
// wait on a list of every namespace, and one on an apiserver busy enough to
// delay that list past the handler's timeout refused a pod create ("Timeout:
// failed waiting for *v1.Namespace Informer to sync", seen in the node
// suite's rollout). Registered here, the informers list from the process's
// start, and the replica is not Ready until they have.
//
// A kind the apiserver does not serve (the MeshConfig CRD not installed) has
// nothing to wait for; its informer is registered once it is served. A
// look-up failing with a transient error (the first of a kind is a
// discovery request, the apiserver restarting or overloaded) is retried
// like serve's other start-up reads (internal/transient), logged to log:
// returned at once, it ended serve.
func CachesSynced(ctx context.Context, c cache.Informers, log logr.Logger, objs ...client.Object) (func() error, error) {
	type synced struct {
		kind string
		// hasSynced is nil while the apiserver does not serve the kind.
		hasSynced func() bool
	}
	var mu sync.Mutex
	var all []*synced
	for _, obj := range objs {
		s := &synced{kind: kindOf(obj)}
		var inf cache.Informer
		err := transient.Retry(ctx, log, 0, "registering the informer for "+s.kind, func(ctx context.Context) (err error) {
			inf, err = c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
			return err
		})
		switch {
		case meta.IsNoMatchError(err):
			// A custom resource whose CRD is not installed (yet, or any
			// more): no object of it exists, so nothing is waited for, and
			// failing here made serve exit and crash-loop. Registered once
			// the kind is served.
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-time.After(absentKindRetry):
					}
					if inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err == nil {
						mu.Lock()
						s.hasSynced = inf.HasSynced
						mu.Unlock()
						return
					}
				}
			}()
		case err != nil:
			return nil, fmt.Errorf("informer for %s: %w", kindOf(obj), err)
		default:
			s.hasSynced = inf.HasSynced
		}
		all = append(all, s)
	}
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		var waiting []string
		for _, s := range all {
			if s.hasSynced != nil && !s.hasSynced() {
				waiting = append(waiting, s.kind)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("waiting for the caches of %s to sync", strings.Join(waiting, ", "))
		}
		return nil
	}, nil
}

// absentKindRetry is how often CachesSynced looks up a kind the apiserver
// did not serve (each look-up is a discovery request).
const absentKindRetry = 10 * time.Second

// kindOf names obj's kind for a message: its GVK when set (unstructured and
// metadata-only objects carry one), else its Go type.
func kindOf(obj client.Object) string {
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk != (schema.GroupVersionKind{}) {
		return gvk.Kind
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", obj), "*")
}
