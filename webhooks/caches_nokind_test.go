package webhooks

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// notServed is a cache on an apiserver that serves no kind asked for: a
// custom resource whose CRD is not installed.
type notServed struct{ cache.Informers }

func (notServed) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	return nil, &meta.NoKindMatchError{GroupKind: gvk.GroupKind(), SearchedVersions: []string{gvk.Version}}
}

// TestCachesSyncedKindNotServed: a kind whose CRD is not installed has
// nothing to sync. It was an error, which made serve exit (and its pod
// crash-loop) while the MeshConfig CRD was missing.
func TestCachesSyncedKindNotServed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc := &unstructured.Unstructured{}
	mc.SetGroupVersionKind(schema.GroupVersionKind{Group: "config.flomesh.io", Version: "v1alpha3", Kind: "MeshConfig"})
	synced, err := CachesSynced(ctx, notServed{}, logr.Discard(), mc)
	if err != nil {
		t.Fatalf("CachesSynced with the CRD not installed: %v", err)
	}
	if err := synced(); err != nil {
		t.Errorf("synced() with the CRD not installed = %v, want nil", err)
	}
}
