package validator

import (
	"context"
	"testing"

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

// TestFeatureFlagWithoutMeshConfigCRD: without the MeshConfig CRD every
// feature flag is off, as without a MeshConfig, rather than an error that
// refused every Plugin and AccessCert.
func TestFeatureFlagWithoutMeshConfigCRD(t *testing.T) {
	h := NewHandler(Options{Reader: noCRDReader{}})
	on, err := h.featureFlag(context.Background(), "enablePluginPolicy")
	if err != nil || on {
		t.Fatalf("featureFlag without the MeshConfig CRD = %v, %v; want false, nil", on, err)
	}
}
