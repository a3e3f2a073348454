package injector

import (
	"context"
	"reflect"
	"testing"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// noCRDReader answers as a controller-runtime cache does while the
// MeshConfig CRD is not installed.
type noCRDReader struct{}

func (noCRDReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "config.flomesh.io", Kind: "MeshConfig"}, SearchedVersions: []string{"v1alpha3"}}
}

func (noCRDReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "config.flomesh.io", Kind: "MeshConfig"}}
}

// TestCachedMeshConfigWithoutCRD: without the MeshConfig CRD pods are
// injected with the built-in defaults, as without a MeshConfig, rather than
// refused with the cache's "no matches for kind".
func TestCachedMeshConfigWithoutCRD(t *testing.T) {
	c := &CachedMeshConfig{Reader: noCRDReader{}, Namespace: "fsm-system", Logger: testr.New(t)}
	s, err := c.Settings(context.Background())
	if err != nil {
		t.Fatalf("Settings without the MeshConfig CRD: %v", err)
	}
	if !reflect.DeepEqual(s, checkedDefaults()) {
		t.Errorf("Settings without the MeshConfig CRD = %+v, want the built-in defaults", s)
	}
}
