package v1alpha3

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Defaults of the objects v1alpha3 requires (spec.image, spec.misc,
// spec.connector), equal to the CRD schema defaults. Conversion from older
// versions fills them in so the result is a valid v1alpha3 object.
const (
	DefaultImageRegistry   = "flomesh"
	DefaultImageTag        = "latest"
	DefaultImagePullPolicy = corev1.PullIfNotPresent
	DefaultRepoServerImage = "flomesh/pipy-repo:1.5.12" // FSM v1.5.1's CRD default and chart value
	DefaultConnectorNotice = "viaGateway Managed by fsm-connector-gateway."
	DefaultClusterSetValue = "default" // region, zone and group
)

// DefaultImage is spec.image as the schema defaults it.
func DefaultImage() ImageSpec {
	return ImageSpec{Registry: DefaultImageRegistry, Tag: DefaultImageTag, PullPolicy: DefaultImagePullPolicy}
}

// DefaultMisc is spec.misc as the schema defaults it.
func DefaultMisc() MiscSpec {
	return MiscSpec{RepoServerImage: DefaultRepoServerImage}
}

// DefaultConnector is spec.connector as the schema defaults it.
func DefaultConnector() ConnectorSpec {
	return ConnectorSpec{Lb: ConnectorLoadBalancer{Type: ActiveActiveLbType}, Notice: DefaultConnectorNotice}
}

// DefaultServiceAccessNames is traffic.serviceAccessNames as the schema
// defaults it when traffic is present.
func DefaultServiceAccessNames() *ServiceAccessNames {
	return &ServiceAccessNames{
		WithTrustDomain:         ptr.To(true),
		MustWithNamespace:       ptr.To(true),
		CloudServiceAccessNames: &CloudServiceAccessNames{WithNamespace: ptr.To(true)},
	}
}
