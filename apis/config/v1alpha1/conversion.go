package v1alpha1

import (
	"fmt"
	"math"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

var _ conversion.Convertible = &MeshConfig{}

// ConvertTo converts this MeshConfig to the v1alpha3 hub. v1alpha3 data kept
// in the lossless.AnnotationV1Alpha3Fields annotation (from an earlier
// conversion down) is restored; what is missing gets the v1alpha3 defaults so
// the result is a valid v1alpha3 object. sidecarClass, initContainerImage and
// sidecarDrivers, which v1alpha3 lacks, go into
// lossless.AnnotationV1Alpha2Fields.
func (src *MeshConfig) ConvertTo(dstRaw conversion.Hub) error {
	dst, ok := dstRaw.(*v1alpha3.MeshConfig)
	if !ok {
		return fmt.Errorf("converting %s/%s to the hub: got %T, want *v1alpha3.MeshConfig", src.Namespace, src.Name, dstRaw)
	}
	in := src.DeepCopy()
	dst.ObjectMeta = in.ObjectMeta

	kept := &hubFields{}
	if _, err := lossless.Unstash(&dst.ObjectMeta, lossless.AnnotationV1Alpha3Fields, kept); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha3: %w", src.Namespace, src.Name, err)
	}
	lossless.FillDefaults(kept, hubDefaults())

	dst.Spec = specToHub(&in.Spec)
	kept.applyTo(&dst.Spec)
	dst.Spec.Observability.Tracing.SampledFraction = fractionToHub(in.Spec.Observability.Tracing.SampledFraction, kept.Observability.Tracing.SampledFraction)
	dst.Spec.Observability.RemoteLogging.SampledFraction = fractionToHub(in.Spec.Observability.RemoteLogging.SampledFraction, kept.Observability.RemoteLogging.SampledFraction)

	legacy := legacyFields{Sidecar: legacySidecar{
		SidecarClass:       in.Spec.Sidecar.SidecarClass,
		InitContainerImage: in.Spec.Sidecar.InitContainerImage,
		SidecarDrivers:     in.Spec.Sidecar.SidecarDrivers,
	}}
	if err := lossless.Stash(&dst.ObjectMeta, lossless.AnnotationV1Alpha2Fields, legacy, !legacy.empty()); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha3: %w", src.Namespace, src.Name, err)
	}
	return nil
}

// ConvertFrom converts the v1alpha3 hub to this version, the inverse of
// ConvertTo: v1alpha3-only data goes into lossless.AnnotationV1Alpha3Fields
// (unless it is what ConvertTo would fill in anyway) and the v1alpha1-only
// fields come back from lossless.AnnotationV1Alpha2Fields.
func (dst *MeshConfig) ConvertFrom(srcRaw conversion.Hub) error {
	src, ok := srcRaw.(*v1alpha3.MeshConfig)
	if !ok {
		return fmt.Errorf("converting the hub to v1alpha1: got %T, want *v1alpha3.MeshConfig", srcRaw)
	}
	in := src.DeepCopy()
	dst.ObjectMeta = in.ObjectMeta
	dst.Spec = specFromHub(&in.Spec)

	var legacy legacyFields
	if _, err := lossless.Unstash(&dst.ObjectMeta, lossless.AnnotationV1Alpha2Fields, &legacy); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha1: %w", src.Namespace, src.Name, err)
	}
	dst.Spec.Sidecar.SidecarClass = legacy.Sidecar.SidecarClass
	dst.Spec.Sidecar.InitContainerImage = legacy.Sidecar.InitContainerImage
	dst.Spec.Sidecar.SidecarDrivers = legacy.Sidecar.SidecarDrivers

	kept := hubFieldsOf(&in.Spec)
	dst.Spec.Observability.Tracing.SampledFraction, kept.Observability.Tracing.SampledFraction = fractionFromHub(in.Spec.Observability.Tracing.SampledFraction)
	dst.Spec.Observability.RemoteLogging.SampledFraction, kept.Observability.RemoteLogging.SampledFraction = fractionFromHub(in.Spec.Observability.RemoteLogging.SampledFraction)
	lossless.PruneDefaults(kept, hubDefaults())
	if err := lossless.Stash(&dst.ObjectMeta, lossless.AnnotationV1Alpha3Fields, kept, !lossless.IsEmpty(kept)); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha1: %w", src.Namespace, src.Name, err)
	}
	return nil
}

// legacyFields is the JSON of lossless.AnnotationV1Alpha2Fields.
type legacyFields struct {
	Sidecar legacySidecar `json:"sidecar"`
}

type legacySidecar struct {
	SidecarClass       string              `json:"sidecarClass,omitempty"`
	InitContainerImage string              `json:"initContainerImage,omitempty"`
	SidecarDrivers     []SidecarDriverSpec `json:"sidecarDrivers,omitempty"`
}

func (l legacyFields) empty() bool {
	return l.Sidecar.SidecarClass == "" && l.Sidecar.InitContainerImage == "" && len(l.Sidecar.SidecarDrivers) == 0
}

// hubFields is the JSON of lossless.AnnotationV1Alpha3Fields: every v1alpha3
// field v1alpha1 lacks, at its v1alpha3 path. Each pointer is one section;
// nil means "the default" (hubDefaults).
type hubFields struct {
	ClusterSet    *hubClusterSet              `json:"clusterSet,omitempty"`
	Sidecar       *hubSidecar                 `json:"sidecar,omitempty"`
	RepoServer    *hubRepoServer              `json:"repoServer,omitempty"`
	Traffic       *hubTraffic                 `json:"traffic,omitempty"`
	Observability *hubObservability           `json:"observability,omitempty"`
	FeatureFlags  *hubFeatureFlags            `json:"featureFlags,omitempty"`
	Warmup        *v1alpha3.WarmupSpec        `json:"warmup,omitempty"`
	Ingress       *v1alpha3.IngressSpec       `json:"ingress,omitempty"`
	GatewayAPI    *v1alpha3.GatewayAPISpec    `json:"gatewayAPI,omitempty"`
	ServiceLB     *v1alpha3.ServiceLBSpec     `json:"serviceLB,omitempty"`
	FLB           *v1alpha3.FLBSpec           `json:"flb,omitempty"`
	EgressGateway *v1alpha3.EgressGatewaySpec `json:"egressGateway,omitempty"`
	Image         *v1alpha3.ImageSpec         `json:"image,omitempty"`
	Misc          *v1alpha3.MiscSpec          `json:"misc,omitempty"`
	Connector     *v1alpha3.ConnectorSpec     `json:"connector,omitempty"`
}

type hubClusterSet struct {
	IsManaged       bool   `json:"isManaged"`
	UID             string `json:"uid"`
	Region          string `json:"region"`
	Zone            string `json:"zone"`
	Group           string `json:"group"`
	Name            string `json:"name"`
	ControlPlaneUID string `json:"controlPlaneUID"`
}

type hubSidecar struct {
	TLSMinProtocolVersion           string                      `json:"tlsMinProtocolVersion,omitempty"`
	TLSMaxProtocolVersion           string                      `json:"tlsMaxProtocolVersion,omitempty"`
	CipherSuites                    []string                    `json:"cipherSuites,omitempty"`
	ECDHCurves                      []string                    `json:"ecdhCurves,omitempty"`
	LocalProxyMode                  v1alpha3.LocalProxyMode     `json:"localProxyMode,omitempty"`
	CompressConfig                  *bool                       `json:"compressConfig,omitempty"`
	HoldApplicationUntilProxyStarts *bool                       `json:"holdApplicationUntilProxyStarts,omitempty"`
	GracefulExitUntilDownstreamEnds *bool                       `json:"gracefulExitUntilDownstreamEnds,omitempty"`
	InitResources                   corev1.ResourceRequirements `json:"initResources"`
	HealthcheckResources            corev1.ResourceRequirements `json:"healthcheckResources"`
	LocalDNSProxy                   v1alpha3.LocalDNSProxy      `json:"localDNSProxy"`
	XNetDNSProxy                    v1alpha3.XNetDNSProxy       `json:"xnetDNSProxy"`
}

type hubRepoServer struct {
	Port int32 `json:"port"`
}

type hubTraffic struct {
	OutboundIPRangeInclusionList  []string                     `json:"outboundIPRangeInclusionList,omitempty"`
	NetworkInterfaceExclusionList []string                     `json:"networkInterfaceExclusionList,omitempty"`
	ServiceAccessNames            *v1alpha3.ServiceAccessNames `json:"serviceAccessNames,omitempty"`
}

type hubObservability struct {
	Tracing       hubTracing       `json:"tracing"`
	RemoteLogging hubRemoteLogging `json:"remoteLogging"`
}

// SampledFraction here is the v1alpha3 string when the v1alpha1 number
// cannot reproduce it (not a number, or not in canonical form like "0.50").
type hubTracing struct {
	SampledFraction *string `json:"sampledFraction,omitempty"`
}

type hubRemoteLogging struct {
	SecretName      string  `json:"secretName,omitempty"`
	SampledFraction *string `json:"sampledFraction,omitempty"`
}

type hubFeatureFlags struct {
	EnableTrafficWarmupPolicy             bool `json:"enableTrafficWarmupPolicy"`
	EnableSidecarPrettyConfig             bool `json:"enableSidecarPrettyConfig"`
	EnableValidateGatewayListenerHostname bool `json:"enableValidateGatewayListenerHostname"`
	EnableValidateHTTPRouteHostnames      bool `json:"enableValidateHTTPRouteHostnames"`
	EnableValidateGRPCRouteHostnames      bool `json:"enableValidateGRPCRouteHostnames"`
	EnableValidateTLSRouteHostnames       bool `json:"enableValidateTLSRouteHostnames"`
	UseEndpointSlicesForGateway           bool `json:"useEndpointSlicesForGateway"`
	DropRouteRuleIfNoAvailableBackends    bool `json:"dropRouteRuleIfNoAvailableBackends"`
}

// hubDefaults is what a v1alpha1 object without the annotation becomes in
// v1alpha3: what the v1alpha3 schema defaults (the apiserver applies those
// defaults to the stored object anyway), required objects with their
// defaults, optional sections absent. Built fresh on each call because FillDefaults hands its
// sections to the converted object.
func hubDefaults() *hubFields {
	image, misc, connector := v1alpha3.DefaultImage(), v1alpha3.DefaultMisc(), v1alpha3.DefaultConnector()
	return &hubFields{
		ClusterSet: &hubClusterSet{
			Region: v1alpha3.DefaultClusterSetValue, Zone: v1alpha3.DefaultClusterSetValue, Group: v1alpha3.DefaultClusterSetValue,
		},
		Sidecar: &hubSidecar{
			CompressConfig: ptr.To(true), HoldApplicationUntilProxyStarts: ptr.To(true), GracefulExitUntilDownstreamEnds: ptr.To(true),
		},
		RepoServer: &hubRepoServer{},
		Traffic: &hubTraffic{
			// Required in v1alpha3: an empty list, never null.
			OutboundIPRangeInclusionList: []string{}, NetworkInterfaceExclusionList: []string{},
			ServiceAccessNames: v1alpha3.DefaultServiceAccessNames(),
		},
		Observability: &hubObservability{},
		FeatureFlags:  &hubFeatureFlags{},
		Image:         &image,
		Misc:          &misc,
		Connector:     &connector,
	}
}

// hubFieldsOf extracts every v1alpha1-less section of s (nothing pruned yet).
func hubFieldsOf(s *v1alpha3.MeshConfigSpec) *hubFields {
	c, sc, ff := s.ClusterSet, s.Sidecar, s.FeatureFlags
	return &hubFields{
		ClusterSet: &hubClusterSet{
			IsManaged: c.IsManaged, UID: c.UID, Region: c.Region, Zone: c.Zone, Group: c.Group, Name: c.Name, ControlPlaneUID: c.ControlPlaneUID,
		},
		Sidecar: &hubSidecar{
			TLSMinProtocolVersion: sc.TLSMinProtocolVersion, TLSMaxProtocolVersion: sc.TLSMaxProtocolVersion,
			CipherSuites: sc.CipherSuites, ECDHCurves: sc.ECDHCurves, LocalProxyMode: sc.LocalProxyMode,
			CompressConfig: sc.CompressConfig, HoldApplicationUntilProxyStarts: sc.HoldApplicationUntilProxyStarts,
			GracefulExitUntilDownstreamEnds: sc.GracefulExitUntilDownstreamEnds,
			InitResources:                   sc.InitResources, HealthcheckResources: sc.HealthcheckResources,
			LocalDNSProxy: sc.LocalDNSProxy,
			XNetDNSProxy:  sc.XNetDNSProxy,
		},
		RepoServer: &hubRepoServer{Port: s.RepoServer.Port},
		Traffic: &hubTraffic{
			OutboundIPRangeInclusionList:  s.Traffic.OutboundIPRangeInclusionList,
			NetworkInterfaceExclusionList: s.Traffic.NetworkInterfaceExclusionList,
			ServiceAccessNames:            s.Traffic.ServiceAccessNames,
		},
		Observability: &hubObservability{RemoteLogging: hubRemoteLogging{SecretName: s.Observability.RemoteLogging.SecretName}},
		FeatureFlags: &hubFeatureFlags{
			EnableTrafficWarmupPolicy: ff.EnableTrafficWarmupPolicy, EnableSidecarPrettyConfig: ff.EnableSidecarPrettyConfig,
			EnableValidateGatewayListenerHostname: ff.EnableValidateGatewayListenerHostname,
			EnableValidateHTTPRouteHostnames:      ff.EnableValidateHTTPRouteHostnames,
			EnableValidateGRPCRouteHostnames:      ff.EnableValidateGRPCRouteHostnames,
			EnableValidateTLSRouteHostnames:       ff.EnableValidateTLSRouteHostnames,
			UseEndpointSlicesForGateway:           ff.UseEndpointSlicesForGateway,
			DropRouteRuleIfNoAvailableBackends:    ff.DropRouteRuleIfNoAvailableBackends,
		},
		Warmup: s.Warmup, Ingress: s.Ingress, GatewayAPI: s.GatewayAPI, ServiceLB: s.ServiceLB, FLB: s.FLB, EgressGateway: s.EgressGateway,
		Image: &s.Image, Misc: &s.Misc, Connector: &s.Connector,
	}
}

// applyTo writes the sections into s; every section must be set (FillDefaults).
func (h *hubFields) applyTo(s *v1alpha3.MeshConfigSpec) {
	c := h.ClusterSet
	s.ClusterSet.IsManaged, s.ClusterSet.UID, s.ClusterSet.Region, s.ClusterSet.Zone = c.IsManaged, c.UID, c.Region, c.Zone
	s.ClusterSet.Group, s.ClusterSet.Name, s.ClusterSet.ControlPlaneUID = c.Group, c.Name, c.ControlPlaneUID

	sc := h.Sidecar
	s.Sidecar.CompressConfig = sc.CompressConfig
	s.Sidecar.HoldApplicationUntilProxyStarts = sc.HoldApplicationUntilProxyStarts
	s.Sidecar.GracefulExitUntilDownstreamEnds = sc.GracefulExitUntilDownstreamEnds
	s.Sidecar.InitResources, s.Sidecar.HealthcheckResources = sc.InitResources, sc.HealthcheckResources
	s.Sidecar.TLSMinProtocolVersion, s.Sidecar.TLSMaxProtocolVersion = sc.TLSMinProtocolVersion, sc.TLSMaxProtocolVersion
	s.Sidecar.CipherSuites, s.Sidecar.ECDHCurves, s.Sidecar.LocalProxyMode = sc.CipherSuites, sc.ECDHCurves, sc.LocalProxyMode
	s.Sidecar.LocalDNSProxy = sc.LocalDNSProxy
	s.Sidecar.XNetDNSProxy = sc.XNetDNSProxy

	s.RepoServer.Port = h.RepoServer.Port
	s.Traffic.OutboundIPRangeInclusionList = nonNil(h.Traffic.OutboundIPRangeInclusionList)
	s.Traffic.NetworkInterfaceExclusionList = nonNil(h.Traffic.NetworkInterfaceExclusionList)
	s.Traffic.ServiceAccessNames = h.Traffic.ServiceAccessNames
	s.Observability.RemoteLogging.SecretName = h.Observability.RemoteLogging.SecretName

	ff := h.FeatureFlags
	s.FeatureFlags.EnableTrafficWarmupPolicy = ff.EnableTrafficWarmupPolicy
	s.FeatureFlags.EnableSidecarPrettyConfig = ff.EnableSidecarPrettyConfig
	s.FeatureFlags.EnableValidateGatewayListenerHostname = ff.EnableValidateGatewayListenerHostname
	s.FeatureFlags.EnableValidateHTTPRouteHostnames = ff.EnableValidateHTTPRouteHostnames
	s.FeatureFlags.EnableValidateGRPCRouteHostnames = ff.EnableValidateGRPCRouteHostnames
	s.FeatureFlags.EnableValidateTLSRouteHostnames = ff.EnableValidateTLSRouteHostnames
	s.FeatureFlags.UseEndpointSlicesForGateway = ff.UseEndpointSlicesForGateway
	s.FeatureFlags.DropRouteRuleIfNoAvailableBackends = ff.DropRouteRuleIfNoAvailableBackends

	s.Warmup, s.Ingress, s.GatewayAPI, s.ServiceLB, s.FLB, s.EgressGateway = h.Warmup, h.Ingress, h.GatewayAPI, h.ServiceLB, h.FLB, h.EgressGateway
	s.Image, s.Misc, s.Connector = *h.Image, *h.Misc, *h.Connector
}

// specToHub converts the fields v1alpha1 and v1alpha3 share.
func specToHub(in *MeshConfigSpec) v1alpha3.MeshConfigSpec {
	sc, tr, ob, ff := in.Sidecar, in.Traffic, in.Observability, in.FeatureFlags
	return v1alpha3.MeshConfigSpec{
		ClusterSet: v1alpha3.ClusterSetSpec{Properties: convertSlice(in.ClusterSet.Properties, func(p ClusterPropertySpec) v1alpha3.ClusterPropertySpec {
			return v1alpha3.ClusterPropertySpec(p)
		})},
		Sidecar: v1alpha3.SidecarSpec{
			EnablePrivilegedInitContainer: sc.EnablePrivilegedInitContainer,
			LogLevel:                      sc.LogLevel,
			SidecarImage:                  sc.SidecarImage,
			SidecarDisabledMTLS:           sc.SidecarDisabledMTLS,
			MaxDataPlaneConnections:       sc.MaxDataPlaneConnections,
			ConfigResyncInterval:          sc.ConfigResyncInterval,
			SidecarTimeout:                sc.SidecarTimeout,
			Resources:                     sc.Resources,
		},
		RepoServer: v1alpha3.RepoServerSpec{IPAddr: in.RepoServer.IPAddr, Codebase: in.RepoServer.Codebase},
		Traffic: v1alpha3.TrafficSpec{
			InterceptionMode:                  tr.InterceptionMode,
			EnableEgress:                      tr.EnableEgress,
			OutboundIPRangeExclusionList:      tr.OutboundIPRangeExclusionList,
			OutboundPortExclusionList:         tr.OutboundPortExclusionList,
			InboundPortExclusionList:          tr.InboundPortExclusionList,
			EnablePermissiveTrafficPolicyMode: tr.EnablePermissiveTrafficPolicyMode,
			InboundExternalAuthorization:      v1alpha3.ExternalAuthzSpec(tr.InboundExternalAuthorization),
			HTTP1PerRequestLoadBalancing:      tr.HTTP1PerRequestLoadBalancing,
			HTTP2PerRequestLoadBalancing:      tr.HTTP2PerRequestLoadBalancing,
			ServiceAccessMode:                 v1alpha3.ServiceAccessMode(tr.ServiceAccessMode),
		},
		Observability: v1alpha3.ObservabilitySpec{
			FSMLogLevel: ob.FSMLogLevel,
			Tracing: v1alpha3.TracingSpec{
				Enable: ob.Tracing.Enable, Port: ob.Tracing.Port, Address: ob.Tracing.Address, Endpoint: ob.Tracing.Endpoint,
			},
			RemoteLogging: v1alpha3.RemoteLoggingSpec{
				Enable: ob.RemoteLogging.Enable, Level: ob.RemoteLogging.Level, Port: ob.RemoteLogging.Port,
				Address: ob.RemoteLogging.Address, Endpoint: ob.RemoteLogging.Endpoint,
				Authorization: ob.RemoteLogging.Authorization,
			},
		},
		Certificate: v1alpha3.CertificateSpec{
			ServiceCertValidityDuration: in.Certificate.ServiceCertValidityDuration,
			CertKeyBitSize:              in.Certificate.CertKeyBitSize,
			IngressGateway:              (*v1alpha3.IngressGatewayCertSpec)(in.Certificate.IngressGateway),
		},
		FeatureFlags: v1alpha3.FeatureFlags{
			EnableEgressPolicy:              ff.EnableEgressPolicy,
			EnableSnapshotCacheMode:         ff.EnableSnapshotCacheMode,
			EnableAsyncProxyServiceMapping:  ff.EnableAsyncProxyServiceMapping,
			EnableIngressBackendPolicy:      ff.EnableIngressBackendPolicy,
			EnableAccessControlPolicy:       ff.EnableAccessControlPolicy,
			EnableAccessCertPolicy:          ff.EnableAccessCertPolicy,
			EnableSidecarActiveHealthChecks: ff.EnableSidecarActiveHealthChecks,
			EnableRetryPolicy:               ff.EnableRetryPolicy,
			EnablePluginPolicy:              ff.EnablePluginPolicy,
			EnableAutoDefaultRoute:          ff.EnableAutoDefaultRoute,
		},
		PluginChains: v1alpha3.PluginChainsSpec{
			InboundTCPChains:   convertSlice(in.PluginChains.InboundTCPChains, pluginToHub),
			InboundHTTPChains:  convertSlice(in.PluginChains.InboundHTTPChains, pluginToHub),
			OutboundTCPChains:  convertSlice(in.PluginChains.OutboundTCPChains, pluginToHub),
			OutboundHTTPChains: convertSlice(in.PluginChains.OutboundHTTPChains, pluginToHub),
		},
	}
}

// specFromHub converts the fields v1alpha1 and v1alpha3 share.
func specFromHub(in *v1alpha3.MeshConfigSpec) MeshConfigSpec {
	sc, tr, ob, ff := in.Sidecar, in.Traffic, in.Observability, in.FeatureFlags
	return MeshConfigSpec{
		ClusterSet: ClusterSetSpec{Properties: convertSlice(in.ClusterSet.Properties, func(p v1alpha3.ClusterPropertySpec) ClusterPropertySpec {
			return ClusterPropertySpec(p)
		})},
		Sidecar: SidecarSpec{
			EnablePrivilegedInitContainer: sc.EnablePrivilegedInitContainer,
			LogLevel:                      sc.LogLevel,
			SidecarImage:                  sc.SidecarImage,
			SidecarDisabledMTLS:           sc.SidecarDisabledMTLS,
			MaxDataPlaneConnections:       sc.MaxDataPlaneConnections,
			ConfigResyncInterval:          sc.ConfigResyncInterval,
			SidecarTimeout:                sc.SidecarTimeout,
			Resources:                     sc.Resources,
		},
		RepoServer: RepoServerSpec{IPAddr: in.RepoServer.IPAddr, Codebase: in.RepoServer.Codebase},
		Traffic: TrafficSpec{
			InterceptionMode:                  tr.InterceptionMode,
			EnableEgress:                      tr.EnableEgress,
			OutboundIPRangeExclusionList:      tr.OutboundIPRangeExclusionList,
			OutboundPortExclusionList:         tr.OutboundPortExclusionList,
			InboundPortExclusionList:          tr.InboundPortExclusionList,
			EnablePermissiveTrafficPolicyMode: tr.EnablePermissiveTrafficPolicyMode,
			InboundExternalAuthorization:      ExternalAuthzSpec(tr.InboundExternalAuthorization),
			HTTP1PerRequestLoadBalancing:      tr.HTTP1PerRequestLoadBalancing,
			HTTP2PerRequestLoadBalancing:      tr.HTTP2PerRequestLoadBalancing,
			ServiceAccessMode:                 string(tr.ServiceAccessMode),
		},
		Observability: ObservabilitySpec{
			FSMLogLevel: ob.FSMLogLevel,
			Tracing: TracingSpec{
				Enable: ob.Tracing.Enable, Port: ob.Tracing.Port, Address: ob.Tracing.Address, Endpoint: ob.Tracing.Endpoint,
			},
			RemoteLogging: RemoteLoggingSpec{
				Enable: ob.RemoteLogging.Enable, Level: ob.RemoteLogging.Level, Port: ob.RemoteLogging.Port,
				Address: ob.RemoteLogging.Address, Endpoint: ob.RemoteLogging.Endpoint,
				Authorization: ob.RemoteLogging.Authorization,
			},
		},
		Certificate: CertificateSpec{
			ServiceCertValidityDuration: in.Certificate.ServiceCertValidityDuration,
			CertKeyBitSize:              in.Certificate.CertKeyBitSize,
			IngressGateway:              (*IngressGatewayCertSpec)(in.Certificate.IngressGateway),
		},
		FeatureFlags: FeatureFlags{
			EnableEgressPolicy:              ff.EnableEgressPolicy,
			EnableSnapshotCacheMode:         ff.EnableSnapshotCacheMode,
			EnableAsyncProxyServiceMapping:  ff.EnableAsyncProxyServiceMapping,
			EnableIngressBackendPolicy:      ff.EnableIngressBackendPolicy,
			EnableAccessControlPolicy:       ff.EnableAccessControlPolicy,
			EnableAccessCertPolicy:          ff.EnableAccessCertPolicy,
			EnableSidecarActiveHealthChecks: ff.EnableSidecarActiveHealthChecks,
			EnableRetryPolicy:               ff.EnableRetryPolicy,
			EnablePluginPolicy:              ff.EnablePluginPolicy,
			EnableAutoDefaultRoute:          ff.EnableAutoDefaultRoute,
		},
		PluginChains: PluginChainsSpec{
			InboundTCPChains:   convertSlice(in.PluginChains.InboundTCPChains, pluginFromHub),
			InboundHTTPChains:  convertSlice(in.PluginChains.InboundHTTPChains, pluginFromHub),
			OutboundTCPChains:  convertSlice(in.PluginChains.OutboundTCPChains, pluginFromHub),
			OutboundHTTPChains: convertSlice(in.PluginChains.OutboundHTTPChains, pluginFromHub),
		},
	}
}

func pluginToHub(p PluginChainSpec) v1alpha3.PluginChainSpec   { return v1alpha3.PluginChainSpec(p) }
func pluginFromHub(p v1alpha3.PluginChainSpec) PluginChainSpec { return PluginChainSpec(p) }

// convertSlice maps in with f, keeping nil as nil.
func convertSlice[A, B any](in []A, f func(A) B) []B {
	if in == nil {
		return nil
	}
	out := make([]B, len(in))
	for i := range in {
		out[i] = f(in[i])
	}
	return out
}

// fractionFromHub turns the v1alpha3 sampledFraction string into the
// v1alpha1 number. raw is the string to keep in the annotation when the
// number cannot reproduce it exactly; nil when it can.
func fractionFromHub(s *string) (num *float64, raw *string) {
	if s == nil {
		return nil, nil
	}
	f, ok := parseFraction(*s)
	if !ok {
		return nil, s
	}
	if formatFraction(f) != *s {
		return &f, s
	}
	return &f, nil
}

// fractionToHub is the inverse of fractionFromHub. The kept string wins only
// while it still matches the v1alpha1 value: a number changed through
// v1alpha1 (or removed there) overrides what the annotation remembers.
func fractionToHub(num *float64, raw *string) *string {
	if num == nil {
		if raw != nil {
			if _, isNumber := parseFraction(*raw); !isNumber {
				return raw
			}
		}
		return nil
	}
	if raw != nil {
		if f, ok := parseFraction(*raw); ok && f == *num {
			return raw
		}
	}
	s := formatFraction(*num)
	return &s
}

// parseFraction accepts what v1alpha1 can hold as a JSON number.
func parseFraction(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// formatFraction is the shortest text that parses back to exactly f.
func formatFraction(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// nonNil keeps required v1alpha3 lists from being written as null.
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
