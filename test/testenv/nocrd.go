package testenv

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NoMeshConfigCRD is a client.Reader that answers as a controller-runtime
// cache does while the MeshConfig CRD is not installed: no kind matches.
type NoMeshConfigCRD struct{}

func (NoMeshConfigCRD) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "config.flomesh.io", Kind: "MeshConfig"}, SearchedVersions: []string{"v1alpha3"}}
}

func (NoMeshConfigCRD) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "config.flomesh.io", Kind: "MeshConfig"}}
}
