package v1alpha3

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshConfig is the mesh-wide configuration (FSM names its instance
// fsm-mesh-config in the control plane namespace).
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:shortName=meshconfig,scope=Namespaced
// +kubebuilder:metadata:labels=app.kubernetes.io/name=flomesh.io
// +kubebuilder:metadata:labels=flomesh.io/reconcile=false
type MeshConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the MeshConfig specification.
	// +optional
	Spec MeshConfigSpec `json:"spec,omitempty"`
}

// Hub marks v1alpha3 as the conversion hub (controller-runtime conversion).
func (*MeshConfig) Hub() {}

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
	// ClusterSet identifies this cluster in a multi-cluster set.
	// +optional
	ClusterSet ClusterSetSpec `json:"clusterSet,omitempty"`

	// Sidecar configures the proxy sidecar of meshed pods.
	// +optional
	Sidecar SidecarSpec `json:"sidecar,omitempty"`

	// RepoServer configures the Pipy repo server.
	// +optional
	RepoServer RepoServerSpec `json:"repoServer,omitempty"`

	// Traffic configures traffic management.
	// +optional
	Traffic TrafficSpec `json:"traffic,omitempty"`

	// Warmup configures slow start of new endpoints.
	// +optional
	Warmup *WarmupSpec `json:"warmup,omitempty"`

	// Observability configures logging, tracing and remote logging.
	// +optional
	Observability ObservabilitySpec `json:"observability,omitempty"`

	// Certificate configures certificate issuance.
	// +optional
	Certificate CertificateSpec `json:"certificate,omitempty"`

	// FeatureFlags switches optional features.
	// +optional
	FeatureFlags FeatureFlags `json:"featureFlags,omitempty"`

	// PluginChains are the default plugin chains.
	// +optional
	PluginChains PluginChainsSpec `json:"pluginChains,omitempty"`

	// Ingress configures the ingress controller.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// GatewayAPI configures the Gateway API controller.
	// +optional
	GatewayAPI *GatewayAPISpec `json:"gatewayAPI,omitempty"`

	// ServiceLB configures the service load balancer.
	// +optional
	ServiceLB *ServiceLBSpec `json:"serviceLB,omitempty"`

	// FLB configures the Flomesh load balancer.
	// +optional
	FLB *FLBSpec `json:"flb,omitempty"`

	// EgressGateway configures the egress gateway.
	// +optional
	EgressGateway *EgressGatewaySpec `json:"egressGateway,omitempty"`

	// Image configures where control plane images come from.
	Image ImageSpec `json:"image"`

	// Misc holds images that fit nowhere else.
	Misc MiscSpec `json:"misc"`

	// Connector configures the service connectors.
	Connector ConnectorSpec `json:"connector"`
}

// ClusterPropertySpec is one cluster property.
type ClusterPropertySpec struct {
	// Name of the property.
	Name string `json:"name"`
	// Value of the property.
	Value string `json:"value"`
}

// ClusterSetSpec identifies the cluster.
type ClusterSetSpec struct {
	// IsManaged tells whether the cluster is managed by a control plane cluster.
	// +kubebuilder:default=false
	IsManaged bool `json:"isManaged"`

	// UID is the unique ID of the cluster.
	UID string `json:"uid"`

	// Region, Zone and Group have no omitempty, as in FSM's type: an
	// explicit "" must survive conversion instead of becoming the schema
	// default; +optional keeps them out of the schema's required list.

	// Region of the cluster.
	// +kubebuilder:default=default
	// +optional
	Region string `json:"region"`

	// Zone of the cluster.
	// +kubebuilder:default=default
	// +optional
	Zone string `json:"zone"`

	// Group of the cluster.
	// +kubebuilder:default=default
	// +optional
	Group string `json:"group"`

	// Name of the cluster.
	Name string `json:"name"`

	// ControlPlaneUID is the unique ID of the managing control plane cluster.
	ControlPlaneUID string `json:"controlPlaneUID"`

	// Properties of the cluster.
	Properties []ClusterPropertySpec `json:"properties"`
}

// LocalProxyMode is how the sidecar reaches the application container.
// +kubebuilder:validation:Enum=Localhost;PodIP
type LocalProxyMode string

const (
	// LocalProxyModeLocalhost proxies to the application over localhost.
	LocalProxyModeLocalhost LocalProxyMode = "Localhost"
	// LocalProxyModePodIP proxies to the application over the pod IP.
	LocalProxyModePodIP LocalProxyMode = "PodIP"
)

// SidecarSpec configures the proxy sidecar. tlsMinProtocolVersion <= tlsMaxProtocolVersion
// is checked by the validator webhook, not the schema (FSM's has no such rule).
type SidecarSpec struct {
	// EnablePrivilegedInitContainer runs the init container privileged.
	EnablePrivilegedInitContainer bool `json:"enablePrivilegedInitContainer"`

	// CompressConfig compresses the sidecar configuration.
	// +kubebuilder:default=true
	// +optional
	CompressConfig *bool `json:"compressConfig,omitempty"`

	// HoldApplicationUntilProxyStarts starts application containers only
	// after the sidecar is ready.
	// +kubebuilder:default=true
	// +optional
	HoldApplicationUntilProxyStarts *bool `json:"holdApplicationUntilProxyStarts,omitempty"`

	// GracefulExitUntilDownstreamEnds keeps the sidecar up until downstream
	// connections end.
	// +kubebuilder:default=true
	// +optional
	GracefulExitUntilDownstreamEnds *bool `json:"gracefulExitUntilDownstreamEnds,omitempty"`

	// LogLevel of the sidecar (error in production).
	// +optional
	LogLevel string `json:"logLevel,omitempty"`

	// SidecarImage is the proxy sidecar image.
	// +optional
	SidecarImage string `json:"sidecarImage,omitempty"`

	// SidecarDisabledMTLS disables mTLS between sidecars.
	SidecarDisabledMTLS bool `json:"sidecarDisabledMTLS"`

	// MaxDataPlaneConnections limits data plane connections to the controller
	// (0 = unlimited).
	// +optional
	MaxDataPlaneConnections int `json:"maxDataPlaneConnections,omitempty"`

	// ConfigResyncInterval is how often proxy configuration is rebroadcast (Go duration).
	// +optional
	ConfigResyncInterval string `json:"configResyncInterval,omitempty"`

	// SidecarTimeout is the connect/idle/read/write timeout in seconds.
	// +optional
	SidecarTimeout int `json:"sidecarTimeout,omitempty"`

	// Resources of the sidecar container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// InitResources of the init container.
	// +optional
	InitResources corev1.ResourceRequirements `json:"initResources,omitempty"`

	// HealthcheckResources of the health check container.
	// +optional
	HealthcheckResources corev1.ResourceRequirements `json:"healthcheckResources,omitempty"`

	// TLSMinProtocolVersion is the minimum TLS version the sidecar accepts.
	// +optional
	TLSMinProtocolVersion string `json:"tlsMinProtocolVersion,omitempty"`

	// TLSMaxProtocolVersion is the maximum TLS version the sidecar accepts.
	// +optional
	TLSMaxProtocolVersion string `json:"tlsMaxProtocolVersion,omitempty"`

	// CipherSuites for TLS 1.0-1.2 (OpenSSL names).
	// +optional
	CipherSuites []string `json:"cipherSuites,omitempty"`

	// ECDHCurves for TLS.
	// +optional
	ECDHCurves []string `json:"ecdhCurves,omitempty"`

	// LocalProxyMode is how the sidecar reaches the application (default Localhost).
	// +optional
	LocalProxyMode LocalProxyMode `json:"localProxyMode,omitempty"`

	// LocalDNSProxy configures the sidecar's DNS proxy.
	// +optional
	LocalDNSProxy LocalDNSProxy `json:"localDNSProxy,omitempty"`

	// XNetDNSProxy configures the xnet DNS proxy.
	// +optional
	XNetDNSProxy XNetDNSProxy `json:"xnetDNSProxy,omitempty"`
}

// ResolveAddr is an address a name resolves to.
type ResolveAddr struct {
	// IPv4 address.
	IPv4 string `json:"ipv4"`
	// IPv6 address.
	// +optional
	IPv6 string `json:"ipv6,omitempty"`
}

// WildcardDN configures wildcard DNS answers.
type WildcardDN struct {
	// Enable wildcard answers.
	Enable bool `json:"enable"`
	// LOs are loopback answers.
	// +optional
	LOs []ResolveAddr `json:"los,omitempty"`
	// IPs are answers.
	// +optional
	IPs []ResolveAddr `json:"ips,omitempty"`
}

// ResolveDN is a static DNS entry.
type ResolveDN struct {
	// DN is the domain name.
	DN string `json:"dn"`
	// IPs it resolves to.
	// +optional
	IPs []ResolveAddr `json:"ips,omitempty"`
}

// LocalDNSProxy configures the sidecar DNS proxy.
type LocalDNSProxy struct {
	// Enable the DNS proxy.
	Enable bool `json:"enable"`
	// PrimaryUpstreamDNSServerIPAddr is the primary upstream DNS server.
	// +optional
	PrimaryUpstreamDNSServerIPAddr string `json:"primaryUpstreamDNSServerIPAddr,omitempty"`
	// SecondaryUpstreamDNSServerIPAddr is the secondary upstream DNS server.
	// +optional
	SecondaryUpstreamDNSServerIPAddr string `json:"secondaryUpstreamDNSServerIPAddr,omitempty"`
	// GenerateIPv6BasedOnIPv4 derives IPv6 answers from IPv4 ones.
	// +kubebuilder:default=false
	// +optional
	GenerateIPv6BasedOnIPv4 bool `json:"generateIPv6BasedOnIPv4,omitempty"`
	// Wildcard answers.
	Wildcard WildcardDN `json:"wildcard"`
	// DB is a static resolution table.
	// +optional
	DB []ResolveDN `json:"db,omitempty"`
}

// XNetDNSProxy configures the xnet DNS proxy.
type XNetDNSProxy struct {
	// Enable the xnet DNS proxy.
	Enable bool `json:"enable"`
	// Upstreams are the DNS servers to forward to.
	// +optional
	Upstreams []XNetDNSProxyUpstream `json:"upstreams,omitempty"`
}

// XNetDNSProxyUpstream is an upstream DNS server.
type XNetDNSProxyUpstream struct {
	// Name of the upstream service.
	// +optional
	Name string `json:"name,omitempty"`
	// Namespace of the upstream service.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// IP of the upstream.
	// +optional
	IP string `json:"ip,omitempty"`
	// Port of the upstream.
	// +kubebuilder:default=53
	Port int32 `json:"port"`
}

// RepoServerSpec configures the Pipy repo server.
type RepoServerSpec struct {
	// IPAddr of the repo server.
	IPAddr string `json:"ipaddr"`
	// Port of the repo server (6060 when unset).
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`
	// Codebase is the folder the controller uses.
	Codebase string `json:"codebase"`
}

// ServiceAccessMode is how services are addressed.
// +kubebuilder:validation:Enum=ip;domain;mixed
type ServiceAccessMode string

const (
	// ServiceAccessModeIP addresses services by IP.
	ServiceAccessModeIP ServiceAccessMode = "ip"
	// ServiceAccessModeDomain addresses services by name.
	ServiceAccessModeDomain ServiceAccessMode = "domain"
	// ServiceAccessModeMixed addresses services by IP and name.
	ServiceAccessModeMixed ServiceAccessMode = "mixed"
)

// TrafficSpec configures traffic management.
type TrafficSpec struct {
	// InterceptionMode is where traffic is intercepted.
	// +kubebuilder:validation:Enum=NodeLevel;PodLevel
	InterceptionMode string `json:"interceptionMode"`

	// EnableEgress allows egress to destinations outside the mesh.
	EnableEgress bool `json:"enableEgress"`

	// OutboundIPRangeExclusionList are CIDRs the sidecar does not intercept.
	OutboundIPRangeExclusionList []string `json:"outboundIPRangeExclusionList"`

	// OutboundIPRangeInclusionList are the only CIDRs the sidecar intercepts (when not empty).
	OutboundIPRangeInclusionList []string `json:"outboundIPRangeInclusionList"`

	// OutboundPortExclusionList are outbound ports the sidecar does not intercept.
	// +kubebuilder:validation:items:Format=""
	OutboundPortExclusionList []int32 `json:"outboundPortExclusionList"`

	// InboundPortExclusionList are inbound ports the sidecar does not intercept.
	// +kubebuilder:validation:items:Format=""
	InboundPortExclusionList []int32 `json:"inboundPortExclusionList"`

	// EnablePermissiveTrafficPolicyMode allows all traffic without SMI policies.
	EnablePermissiveTrafficPolicyMode bool `json:"enablePermissiveTrafficPolicyMode"`

	// InboundExternalAuthorization sends inbound requests to an external authorizer.
	// +optional
	InboundExternalAuthorization ExternalAuthzSpec `json:"inboundExternalAuthorization,omitempty"`

	// NetworkInterfaceExclusionList are interfaces the sidecar does not intercept.
	NetworkInterfaceExclusionList []string `json:"networkInterfaceExclusionList"`

	// HTTP1PerRequestLoadBalancing balances HTTP/1 per request.
	HTTP1PerRequestLoadBalancing bool `json:"http1PerRequestLoadBalancing"`

	// HTTP2PerRequestLoadBalancing balances HTTP/2 per request.
	HTTP2PerRequestLoadBalancing bool `json:"http2PerRequestLoadBalancing"`

	// ServiceAccessMode is how services are addressed.
	// +kubebuilder:default=mixed
	ServiceAccessMode ServiceAccessMode `json:"serviceAccessMode"`

	// ServiceAccessNames shapes the DNS names of services.
	// +kubebuilder:default={mustWithServicePort: false, withTrustDomain: true}
	// +optional
	ServiceAccessNames *ServiceAccessNames `json:"serviceAccessNames,omitempty"`
}

// ServiceAccessNames shapes service DNS names.
type ServiceAccessNames struct {
	// MustWithServicePort requires the port in names.
	// +kubebuilder:default=false
	// +optional
	MustWithServicePort bool `json:"mustWithServicePort,omitempty"`

	// WithTrustDomain adds the trust domain to names.
	// +kubebuilder:default=true
	// +optional
	WithTrustDomain *bool `json:"withTrustDomain,omitempty"`

	// MustWithNamespace requires the namespace in names.
	// +kubebuilder:default=true
	// +optional
	MustWithNamespace *bool `json:"mustWithNamespace,omitempty"`

	// CloudServiceAccessNames shapes names of cloud services.
	// +kubebuilder:default={withNamespace: true}
	// +optional
	CloudServiceAccessNames *CloudServiceAccessNames `json:"cloud,omitempty"`
}

// CloudServiceAccessNames shapes names of cloud services.
type CloudServiceAccessNames struct {
	// WithNamespace adds the namespace to names.
	// +kubebuilder:default=true
	// +optional
	WithNamespace *bool `json:"withNamespace,omitempty"`
}

// WarmupSpec configures slow start of new endpoints. minWeight <= maxWeight is
// checked by the validator webhook, not the schema (FSM's has no such rule).
type WarmupSpec struct {
	// Enable warmup.
	// +kubebuilder:default=true
	// +optional
	Enable *bool `json:"enable,omitempty"`

	// Duration of the warmup (Go duration).
	// +kubebuilder:default="90s"
	// +kubebuilder:validation:Format=duration
	// +optional
	Duration string `json:"duration,omitempty"`

	// MinWeight is the starting weight, 0-100.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MinWeight *int64 `json:"minWeight,omitempty"`

	// MaxWeight is the final weight, 0-100.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxWeight *int64 `json:"maxWeight,omitempty"`

	// Aggression shapes the weight curve: 1 is linear, larger values ramp up
	// faster. A number such as 1.5, as in FSM.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +optional
	Aggression *float64 `json:"aggression,omitempty"`
}

// ObservabilitySpec configures logging and tracing.
type ObservabilitySpec struct {
	// FSMLogLevel is the control plane log level.
	// +kubebuilder:validation:Enum=trace;debug;info;warn;error;fatal;panic;disabled
	// +optional
	FSMLogLevel string `json:"fsmLogLevel,omitempty"`

	// Tracing configures tracing.
	// +optional
	Tracing TracingSpec `json:"tracing,omitempty"`

	// RemoteLogging configures remote logging.
	// +optional
	RemoteLogging RemoteLoggingSpec `json:"remoteLogging,omitempty"`
}

// TracingSpec configures tracing.
type TracingSpec struct {
	// Enable tracing.
	Enable bool `json:"enable"`

	// Port of the collector. FSM types this int16 (1-32767); this API holds
	// every TCP port.
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`

	// Address of the collector.
	// +optional
	Address string `json:"address,omitempty"`

	// Endpoint is the collector API path.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// SampledFraction is a decimal number in [0,1] written as a string.
	// +optional
	SampledFraction *string `json:"sampledFraction,omitempty"`
}

// RemoteLoggingSpec configures remote logging.
type RemoteLoggingSpec struct {
	// Enable remote logging.
	Enable bool `json:"enable"`

	// Level of remote logging.
	// +kubebuilder:validation:Format=""
	// +optional
	Level int32 `json:"level,omitempty"`

	// Port of the collector.
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`

	// Address of the collector.
	// +optional
	Address string `json:"address,omitempty"`

	// Endpoint is the collector API path.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Authorization sent to the collector.
	// +optional
	Authorization string `json:"authorization,omitempty"`

	// SampledFraction is a decimal number in [0,1] written as a string.
	// +optional
	SampledFraction *string `json:"sampledFraction,omitempty"`

	// SecretName is the Secret holding remote logging configuration.
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// ExternalAuthzSpec configures external authorization.
type ExternalAuthzSpec struct {
	// Enable external authorization.
	Enable bool `json:"enable"`

	// Address of the authorizer.
	// +optional
	Address string `json:"address,omitempty"`

	// Port of the authorizer.
	// +kubebuilder:validation:Format=""
	// +optional
	Port int32 `json:"port,omitempty"`

	// StatPrefix for the authorizer's stats.
	// +optional
	StatPrefix string `json:"statPrefix,omitempty"`

	// Timeout of an authorization request (Go duration).
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// FailureModeAllow lets traffic through when the authorizer fails.
	FailureModeAllow bool `json:"failureModeAllow"`
}

// CertificateSpec configures certificate issuance.
type CertificateSpec struct {
	// ServiceCertValidityDuration is the lifetime of service certificates (Go duration).
	// +optional
	ServiceCertValidityDuration string `json:"serviceCertValidityDuration,omitempty"`

	// CertKeyBitSize is the RSA key size of issued certificates.
	// +optional
	CertKeyBitSize int `json:"certKeyBitSize,omitempty"`

	// IngressGateway is the certificate of an ingress gateway.
	// +optional
	IngressGateway *IngressGatewayCertSpec `json:"ingressGateway,omitempty"`
}

// IngressGatewayCertSpec is the certificate of an ingress gateway.
type IngressGatewayCertSpec struct {
	// SubjectAltNames of the certificate.
	SubjectAltNames []string `json:"subjectAltNames"`

	// ValidityDuration of the certificate (Go duration).
	ValidityDuration string `json:"validityDuration"`

	// Secret the certificate is stored in.
	Secret corev1.SecretReference `json:"secret"`
}

// FeatureFlags switches optional features.
type FeatureFlags struct {
	EnableEgressPolicy                    bool `json:"enableEgressPolicy"`
	EnableSnapshotCacheMode               bool `json:"enableSnapshotCacheMode"`
	EnableAsyncProxyServiceMapping        bool `json:"enableAsyncProxyServiceMapping"`
	EnableIngressBackendPolicy            bool `json:"enableIngressBackendPolicy"`
	EnableAccessControlPolicy             bool `json:"enableAccessControlPolicy"`
	EnableAccessCertPolicy                bool `json:"enableAccessCertPolicy"`
	EnableSidecarActiveHealthChecks       bool `json:"enableSidecarActiveHealthChecks"`
	EnableRetryPolicy                     bool `json:"enableRetryPolicy"`
	EnablePluginPolicy                    bool `json:"enablePluginPolicy"`
	EnableAutoDefaultRoute                bool `json:"enableAutoDefaultRoute"`
	EnableTrafficWarmupPolicy             bool `json:"enableTrafficWarmupPolicy"`
	EnableSidecarPrettyConfig             bool `json:"enableSidecarPrettyConfig"`
	EnableValidateGatewayListenerHostname bool `json:"enableValidateGatewayListenerHostname"`
	EnableValidateHTTPRouteHostnames      bool `json:"enableValidateHTTPRouteHostnames"`
	EnableValidateGRPCRouteHostnames      bool `json:"enableValidateGRPCRouteHostnames"`
	EnableValidateTLSRouteHostnames       bool `json:"enableValidateTLSRouteHostnames"`
	UseEndpointSlicesForGateway           bool `json:"useEndpointSlicesForGateway"`
	DropRouteRuleIfNoAvailableBackends    bool `json:"dropRouteRuleIfNoAvailableBackends"`
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
	// Plugin name.
	Plugin string `json:"plugin"`
	// Priority of the plugin.
	Priority float64 `json:"priority"`
	// Disable the plugin.
	Disable bool `json:"disable"`
}

// LogLevel of gateways and controllers.
// +kubebuilder:validation:Enum=trace;debug;info;warn;error;fatal;panic;disabled
type LogLevel string

// IngressSpec configures the ingress controller.
type IngressSpec struct {
	// Enabled turns the ingress controller on.
	// +kubebuilder:default=true
	Enabled bool `json:"enabled"`
	// Namespaced runs one ingress per namespace.
	// +kubebuilder:default=false
	Namespaced bool `json:"namespaced"`
	// Type of the ingress Service.
	// +kubebuilder:default=LoadBalancer
	// +kubebuilder:validation:Enum=LoadBalancer;NodePort
	Type corev1.ServiceType `json:"type"`
	// LogLevel of the ingress.
	// +kubebuilder:default=info
	LogLevel LogLevel `json:"logLevel"`
	// HTTP listener.
	// +kubebuilder:default={enabled: true, bind: 80, listen: 8000, nodePort: 30508}
	// +optional
	HTTP *IngressHTTP `json:"http,omitempty"`
	// TLS listener.
	// +kubebuilder:default={enabled: true, bind: 443, listen: 8443, nodePort: 30607, mTLS: false}
	// +optional
	TLS *IngressTLS `json:"tls,omitempty"`
}

// IngressHTTP is the HTTP listener of the ingress.
type IngressHTTP struct {
	// +kubebuilder:default=true
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Bind int32 `json:"bind"`
	// +kubebuilder:default=8000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Listen int32 `json:"listen"`
	// +kubebuilder:default=30508
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	NodePort int32 `json:"nodePort"`
}

// IngressTLS is the TLS listener of the ingress.
type IngressTLS struct {
	// Enabled defaults to false when the field is missing but the tls object
	// default (FSM) turns it on.
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Bind int32 `json:"bind"`
	// +kubebuilder:default=8443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Listen int32 `json:"listen"`
	// +kubebuilder:default=30607
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	NodePort int32 `json:"nodePort"`
	// +kubebuilder:default=false
	MTLS bool `json:"mTLS"`
	// +kubebuilder:default={enabled: false, upstreamPort: 443}
	// +optional
	SSLPassthrough *SSLPassthrough `json:"sslPassthrough,omitempty"`
}

// SSLPassthrough configures TLS passthrough.
type SSLPassthrough struct {
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	UpstreamPort int32 `json:"upstreamPort"`
}

// GatewayAPISpec configures the Gateway API controller.
type GatewayAPISpec struct {
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=info
	LogLevel LogLevel `json:"logLevel"`
}

// ServiceLBSpec configures the service load balancer.
type ServiceLBSpec struct {
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default="flomesh/mirrored-klipper-lb:v0.4.7"
	Image string `json:"image"`
}

// FLBUpstreamMode is how FLB reaches backends.
// +kubebuilder:validation:Enum=NodePort;Endpoint
type FLBUpstreamMode string

const (
	// FLBUpstreamModeNodePort reaches backends through node ports.
	FLBUpstreamModeNodePort FLBUpstreamMode = "NodePort"
	// FLBUpstreamModeEndpoint reaches backends through endpoints.
	FLBUpstreamModeEndpoint FLBUpstreamMode = "Endpoint"
)

// FLBSpec configures the Flomesh load balancer.
type FLBSpec struct {
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=false
	StrictMode bool `json:"strictMode"`
	// +kubebuilder:default=Endpoint
	UpstreamMode FLBUpstreamMode `json:"upstreamMode"`
	// +kubebuilder:default=fsm-flb-secret
	SecretName string `json:"secretName"`
}

// EgressGatewaySpec configures the egress gateway.
type EgressGatewaySpec struct {
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
	// +kubebuilder:default=info
	LogLevel LogLevel `json:"logLevel"`
	// +kubebuilder:default=http2tunnel
	// +kubebuilder:validation:Enum=http2tunnel;sock5
	Mode string `json:"mode"`
	// +kubebuilder:default=1080
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`
	// +kubebuilder:default=6060
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	AdminPort *int32 `json:"adminPort,omitempty"`
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// ImageSpec is where control plane images come from.
type ImageSpec struct {
	// Registry of the images.
	// +kubebuilder:default=flomesh
	Registry string `json:"registry"`
	// Tag of the images.
	// +kubebuilder:default=latest
	Tag string `json:"tag"`
	// Name overrides image names by component.
	// +optional
	Name map[string]string `json:"name,omitempty"`
	// Digest pins images by component.
	// +optional
	Digest map[string]string `json:"digest,omitempty"`
	// PullPolicy of the images.
	// +kubebuilder:default=IfNotPresent
	PullPolicy corev1.PullPolicy `json:"pullPolicy"`
}

// MiscSpec holds images that fit nowhere else.
type MiscSpec struct {
	// RepoServerImage is the Pipy repo server image.
	// +kubebuilder:default="flomesh/pipy-repo:1.5.12"
	RepoServerImage string `json:"repoServerImage"`
}

// LoadBalancerType is how connector traffic is spread over clusters.
// +kubebuilder:validation:Enum=ActiveActive;FailOver
type LoadBalancerType string

const (
	// ActiveActiveLbType spreads traffic over all targets.
	ActiveActiveLbType LoadBalancerType = "ActiveActive"
	// FailOverLbType sends traffic to the first available target.
	FailOverLbType LoadBalancerType = "FailOver"
)

// ConnectorLoadBalancer spreads connector traffic.
type ConnectorLoadBalancer struct {
	// Type of load distribution.
	// +kubebuilder:default=ActiveActive
	// +optional
	Type LoadBalancerType `json:"type,omitempty"`
	// MasterNamespace in FailOver mode.
	// +optional
	MasterNamespace string `json:"masterNamespace,omitempty"`
	// SlaveNamespaces in FailOver mode.
	// +optional
	SlaveNamespaces []string `json:"slaveNamespaces,omitempty"`
}

// ConnectorSpec configures the service connectors.
type ConnectorSpec struct {
	// Lb spreads connector traffic.
	Lb ConnectorLoadBalancer `json:"lb"`
	// Notice that viaGateway is managed by fsm-connector-gateway.
	// +kubebuilder:default="viaGateway Managed by fsm-connector-gateway."
	Notice string `json:"DO_NOT_EDIT_viaGateway"`
	// ViaGateway is maintained by fsm-connector-gateway.
	ViaGateway ConnectorGatewaySpec `json:"viaGateway"`
}

// ConnectorGatewaySpec are the connector gateway's addresses.
type ConnectorGatewaySpec struct {
	ClusterIP   string `json:"clusterIP"`
	ExternalIP  string `json:"externalIP"`
	IngressAddr string `json:"ingressAddr"`
	// +kubebuilder:validation:Format=""
	IngressHTTPPort int32 `json:"ingressHTTPPort"`
	// +kubebuilder:validation:Format=""
	IngressGRPCPort int32  `json:"ingressGRPCPort"`
	EgressAddr      string `json:"egressAddr"`
	// +kubebuilder:validation:Format=""
	EgressHTTPPort int32 `json:"egressHTTPPort"`
	// +kubebuilder:validation:Format=""
	EgressGRPCPort int32 `json:"egressGRPCPort"`
}
