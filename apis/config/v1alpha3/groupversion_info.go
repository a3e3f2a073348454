// Package v1alpha3 is the storage version of the config.flomesh.io API: the
// MeshConfig that configures the mesh. It is the conversion hub; v1alpha1 and
// v1alpha2 convert to and from it.
//
// +kubebuilder:object:generate=true
// +groupName=config.flomesh.io
package v1alpha3

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "config.flomesh.io", Version: "v1alpha3"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	// apimachinery's builder keeps this package free of controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &MeshConfig{}, &MeshConfigList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
