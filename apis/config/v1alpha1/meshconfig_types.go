package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshConfig is the mesh-wide configuration, v1alpha1 shape.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=meshconfig,scope=Namespaced
// +kubebuilder:metadata:labels=app.kubernetes.io/name=flomesh.io
// +kubebuilder:metadata:labels=flomesh.io/reconcile=false
// +kubebuilder:deprecatedversion:warning="config.flomesh.io/v1alpha1 MeshConfig is deprecated; use config.flomesh.io/v1alpha3"
type MeshConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the MeshConfig specification.
	// +optional
	Spec MeshConfigSpec `json:"spec,omitempty"`
}

// MeshConfigList lists MeshConfig objects.
//
// +kubebuilder:object:root=true
type MeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []MeshConfig `json:"items"`
}

// MeshConfigSpec is the mesh configuration.
type MeshConfigSpec struct {
	// +optional
	ClusterSet ClusterSetSpec `json:"clusterSet,omitempty"`
	// +optional
	Sidecar SidecarSpec `json:"sidecar,omitempty"`
	// +optional
	RepoServer RepoServerSpec `json:"repoServer,omitempty"`
	// +optional
	Traffic TrafficSpec `json:"traffic,omitempty"`
	// +optional
	Observability ObservabilitySpec `json:"observability,omitempty"`
	// +optional
	Certificate CertificateSpec `json:"certificate,omitempty"`
	// +optional
	FeatureFlags FeatureFlags `json:"featureFlags,omitempty"`
	// +optional
	PluginChains PluginChainsSpec `json:"pluginChains,omitempty"`
}

// ClusterPropertySpec is one cluster property.
type ClusterPropertySpec struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ClusterSetSpec describes the cluster.
type ClusterSetSpec struct {
	Properties []ClusterPropertySpec `json:"properties"`
}

// SidecarSpec configures the proxy sidecar.
type SidecarSpec struct {
	EnablePrivilegedInitContainer bool `json:"enablePrivilegedInitContainer"`
	// +optional
	LogLevel string `json:"logLevel,omitempty"`
	// SidecarClass selects the sidecar driver (not in v1alpha3).
	// +optional
	SidecarClass string `json:"sidecarClass,omitempty"`
	// +optional
	SidecarImage string `json:"sidecarImage,omitempty"`
	// InitContainerImage is the init container image (not in v1alpha3).
	// +optional
	InitContainerImage string `json:"initContainerImage,omitempty"`
	// SidecarDrivers are the available sidecar drivers (not in v1alpha3).
	// +optional
	SidecarDrivers      []SidecarDriverSpec `json:"sidecarDrivers,omitempty"`
	SidecarDisabledMTLS bool                `json:"sidecarDisabledMTLS"`
	// +optional
	MaxDataPlaneConnections int `json:"maxDataPlaneConnections,omitempty"`
	// +optional
	ConfigResyncInterval string `json:"configResyncInterval,omitempty"`
	// +optional
	SidecarTimeout int `json:"sidecarTimeout,omitempty"`
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// SidecarDriverSpec is a sidecar driver.
type SidecarDriverSpec struct {
	// +optional
	SidecarName string `json:"sidecarName,omitempty"`
	// +optional
	SidecarImage string `json:"sidecarImage,omitempty"`
	// +optional
	InitContainerImage string `json:"initContainerImage,omitempty"`
	// ProxyServerPort is where the driver's discovery service listens.
	ProxyServerPort     int32 `json:"proxyServerPort"`
	SidecarDisabledMTLS bool  `json:"sidecarDisabledMTLS"`
}

// RepoServerSpec configures the Pipy repo server.
type RepoServerSpec struct {
	IPAddr   string `json:"ipaddr"`
	Codebase string `json:"codebase"`
}

// TrafficSpec configures traffic management.
type TrafficSpec struct {
	InterceptionMode             string   `json:"interceptionMode"`
	EnableEgress                 bool     `json:"enableEgress"`
	OutboundIPRangeExclusionList []string `json:"outboundIPRangeExclusionList"`
	// +kubebuilder:validation:items:Format=""
	OutboundPortExclusionList []int32 `json:"outboundPortExclusionList"`
	// +kubebuilder:validation:items:Format=""
	InboundPortExclusionList          []int32 `json:"inboundPortExclusionList"`
	EnablePermissiveTrafficPolicyMode bool    `json:"enablePermissiveTrafficPolicyMode"`
	// +optional
	InboundExternalAuthorization ExternalAuthzSpec `json:"inboundExternalAuthorization,omitempty"`
	HTTP1PerRequestLoadBalancing bool              `json:"http1PerRequestLoadBalancing"`
	HTTP2PerRequestLoadBalancing bool              `json:"http2PerRequestLoadBalancing"`
	ServiceAccessMode            string            `json:"serviceAccessMode"`
}

// ObservabilitySpec configures logging and tracing.
type ObservabilitySpec struct {
	// +optional
	FSMLogLevel string `json:"fsmLogLevel,omitempty"`
	// +optional
	Tracing TracingSpec `json:"tracing,omitempty"`
	// +optional
	RemoteLogging RemoteLoggingSpec `json:"remoteLogging,omitempty"`
}

// TracingSpec configures tracing.
type TracingSpec struct {
	Enable bool `json:"enable"`
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`
	// +optional
	Address string `json:"address,omitempty"`
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// SampledFraction is a number in [0,1] (a string from v1alpha2 on).
	// +optional
	SampledFraction *float64 `json:"sampledFraction,omitempty"`
}

// RemoteLoggingSpec configures remote logging.
type RemoteLoggingSpec struct {
	Enable bool `json:"enable"`
	// +kubebuilder:validation:Format=""
	// +optional
	Level int32 `json:"level,omitempty"`
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`
	// +optional
	Address string `json:"address,omitempty"`
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// +optional
	Authorization string `json:"authorization,omitempty"`
	// +optional
	SampledFraction *float64 `json:"sampledFraction,omitempty"`
}

// ExternalAuthzSpec configures external authorization.
type ExternalAuthzSpec struct {
	Enable bool `json:"enable"`
	// +optional
	Address string `json:"address,omitempty"`
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`
	// +optional
	StatPrefix string `json:"statPrefix,omitempty"`
	// +optional
	Timeout          string `json:"timeout,omitempty"`
	FailureModeAllow bool   `json:"failureModeAllow"`
}

// CertificateSpec configures certificate issuance.
type CertificateSpec struct {
	// +optional
	ServiceCertValidityDuration string `json:"serviceCertValidityDuration,omitempty"`
	// +optional
	CertKeyBitSize int `json:"certKeyBitSize,omitempty"`
	// +optional
	IngressGateway *IngressGatewayCertSpec `json:"ingressGateway,omitempty"`
}

// IngressGatewayCertSpec is the certificate of an ingress gateway.
type IngressGatewayCertSpec struct {
	SubjectAltNames  []string               `json:"subjectAltNames"`
	ValidityDuration string                 `json:"validityDuration"`
	Secret           corev1.SecretReference `json:"secret"`
}

// FeatureFlags switches optional features.
type FeatureFlags struct {
	EnableEgressPolicy              bool `json:"enableEgressPolicy"`
	EnableSnapshotCacheMode         bool `json:"enableSnapshotCacheMode"`
	EnableAsyncProxyServiceMapping  bool `json:"enableAsyncProxyServiceMapping"`
	EnableIngressBackendPolicy      bool `json:"enableIngressBackendPolicy"`
	EnableAccessControlPolicy       bool `json:"enableAccessControlPolicy"`
	EnableAccessCertPolicy          bool `json:"enableAccessCertPolicy"`
	EnableSidecarActiveHealthChecks bool `json:"enableSidecarActiveHealthChecks"`
	EnableRetryPolicy               bool `json:"enableRetryPolicy"`
	EnablePluginPolicy              bool `json:"enablePluginPolicy"`
	EnableAutoDefaultRoute          bool `json:"enableAutoDefaultRoute"`
}

// PluginChainsSpec are the default plugin chains.
type PluginChainsSpec struct {
	InboundTCPChains   []PluginChainSpec `json:"inbound-tcp"`
	InboundHTTPChains  []PluginChainSpec `json:"inbound-http"`
	OutboundTCPChains  []PluginChainSpec `json:"outbound-tcp"`
	OutboundHTTPChains []PluginChainSpec `json:"outbound-http"`
}

// PluginChainSpec is one plugin in a chain.
type PluginChainSpec struct {
	Plugin   string  `json:"plugin"`
	Priority float64 `json:"priority"`
	Disable  bool    `json:"disable"`
}
