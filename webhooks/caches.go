package webhooks

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
func CachesSynced(ctx context.Context, c cache.Informers, objs ...client.Object) (func() error, error) {
	type synced struct {
		kind      string
		hasSynced func() bool
	}
	var all []synced
	for _, obj := range objs {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("informer for %s: %w", kindOf(obj), err)
		}
		all = append(all, synced{kind: kindOf(obj), hasSynced: inf.HasSynced})
	}
	return func() error {
		var waiting []string
		for _, s := range all {
			if !s.hasSynced() {
				waiting = append(waiting, s.kind)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("waiting for the caches of %s to sync", strings.Join(waiting, ", "))
		}
		return nil
	}, nil
}

// kindOf names obj's kind for a message: its GVK when set (unstructured and
// metadata-only objects carry one), else its Go type.
func kindOf(obj client.Object) string {
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk != (schema.GroupVersionKind{}) {
		return gvk.Kind
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", obj), "*")
}
