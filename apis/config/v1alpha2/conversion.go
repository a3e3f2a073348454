package v1alpha2

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/internal/spoke"
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
	if err := spoke.RestoreHub(&dst.ObjectMeta, kept, hubDefaults()); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha3: %w", src.Namespace, src.Name, err)
	}

	dst.Spec = specToHub(&in.Spec)
	kept.applyTo(&dst.Spec)

	legacy := spoke.Legacy[SidecarDriverSpec]{Sidecar: spoke.LegacySidecar[SidecarDriverSpec]{
		SidecarClass:       in.Spec.Sidecar.SidecarClass,
		InitContainerImage: in.Spec.Sidecar.InitContainerImage,
		SidecarDrivers:     in.Spec.Sidecar.SidecarDrivers,
	}}
	if err := spoke.KeepLegacy(&dst.ObjectMeta, legacy); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha3: %w", src.Namespace, src.Name, err)
	}
	return nil
}

// ConvertFrom converts the v1alpha3 hub to this version, the inverse of
// ConvertTo: v1alpha3-only data goes into lossless.AnnotationV1Alpha3Fields
// (unless it is what ConvertTo would fill in anyway) and the v1alpha2-only
// fields come back from lossless.AnnotationV1Alpha2Fields.
func (dst *MeshConfig) ConvertFrom(srcRaw conversion.Hub) error {
	src, ok := srcRaw.(*v1alpha3.MeshConfig)
	if !ok {
		return fmt.Errorf("converting the hub to v1alpha2: got %T, want *v1alpha3.MeshConfig", srcRaw)
	}
	in := src.DeepCopy()
	dst.ObjectMeta = in.ObjectMeta
	dst.Spec = specFromHub(&in.Spec)

	legacy, err := spoke.RestoreLegacy[SidecarDriverSpec](&dst.ObjectMeta)
	if err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha2: %w", src.Namespace, src.Name, err)
	}
	dst.Spec.Sidecar.SidecarClass = legacy.Sidecar.SidecarClass
	dst.Spec.Sidecar.InitContainerImage = legacy.Sidecar.InitContainerImage
	dst.Spec.Sidecar.SidecarDrivers = legacy.Sidecar.SidecarDrivers

	if err := spoke.KeepHub(&dst.ObjectMeta, hubFieldsOf(&in.Spec), hubDefaults()); err != nil {
		return fmt.Errorf("converting %s/%s to v1alpha2: %w", src.Namespace, src.Name, err)
	}
	return nil
}

// hubFields is the JSON of lossless.AnnotationV1Alpha3Fields: every v1alpha3
// field v1alpha2 lacks, at its v1alpha3 path. Each pointer (those of
// spoke.HubOnly included) is one section; nil means "the default"
// (hubDefaults).
type hubFields struct {
	spoke.HubOnly
	Sidecar       *hubSidecar       `json:"sidecar,omitempty"`
	Traffic       *hubTraffic       `json:"traffic,omitempty"`
	Observability *hubObservability `json:"observability,omitempty"`
}

type hubSidecar struct {
	spoke.Sidecar
	LocalDNSProxy hubLocalDNSProxy `json:"localDNSProxy"`
}

// hubLocalDNSProxy is what v1alpha2's localDNSProxy lacks.
type hubLocalDNSProxy struct {
	GenerateIPv6BasedOnIPv4 bool                 `json:"generateIPv6BasedOnIPv4"`
	Wildcard                v1alpha3.WildcardDN  `json:"wildcard"`
	DB                      []v1alpha3.ResolveDN `json:"db,omitempty"`
}

type hubTraffic struct {
	ServiceAccessNames *v1alpha3.ServiceAccessNames `json:"serviceAccessNames,omitempty"`
}

type hubObservability struct {
	RemoteLogging hubRemoteLogging `json:"remoteLogging"`
}

type hubRemoteLogging struct {
	SecretName string `json:"secretName"`
}

// hubDefaults is what a v1alpha2 object without the annotation becomes in
// v1alpha3 (see spoke.DefaultHubOnly); fresh on each call.
func hubDefaults() *hubFields {
	return &hubFields{
		HubOnly:       spoke.DefaultHubOnly(),
		Sidecar:       &hubSidecar{Sidecar: spoke.DefaultSidecar()},
		Traffic:       &hubTraffic{ServiceAccessNames: v1alpha3.DefaultServiceAccessNames()},
		Observability: &hubObservability{},
	}
}

// hubFieldsOf extracts every v1alpha2-less section of s (nothing pruned yet).
func hubFieldsOf(s *v1alpha3.MeshConfigSpec) *hubFields {
	dns := s.Sidecar.LocalDNSProxy
	return &hubFields{
		HubOnly: spoke.HubOnlyOf(s),
		Sidecar: &hubSidecar{
			Sidecar:       spoke.SidecarOf(&s.Sidecar),
			LocalDNSProxy: hubLocalDNSProxy{GenerateIPv6BasedOnIPv4: dns.GenerateIPv6BasedOnIPv4, Wildcard: dns.Wildcard, DB: dns.DB},
		},
		Traffic:       &hubTraffic{ServiceAccessNames: s.Traffic.ServiceAccessNames},
		Observability: &hubObservability{RemoteLogging: hubRemoteLogging{SecretName: s.Observability.RemoteLogging.SecretName}},
	}
}

// applyTo writes the sections into s; every section must be set (RestoreHub
// fills them).
func (h *hubFields) applyTo(s *v1alpha3.MeshConfigSpec) {
	h.ApplyTo(s)                  // spoke.HubOnly's sections
	h.Sidecar.ApplyTo(&s.Sidecar) // spoke.Sidecar's fields
	dns := h.Sidecar.LocalDNSProxy
	s.Sidecar.LocalDNSProxy.GenerateIPv6BasedOnIPv4 = dns.GenerateIPv6BasedOnIPv4
	s.Sidecar.LocalDNSProxy.Wildcard, s.Sidecar.LocalDNSProxy.DB = dns.Wildcard, dns.DB
	s.Traffic.ServiceAccessNames = h.Traffic.ServiceAccessNames
	s.Observability.RemoteLogging.SecretName = h.Observability.RemoteLogging.SecretName
}

// specToHub converts the fields v1alpha2 and v1alpha3 share.
func specToHub(in *MeshConfigSpec) v1alpha3.MeshConfigSpec {
	sc, tr, ob, ff := in.Sidecar, in.Traffic, in.Observability, in.FeatureFlags
	return v1alpha3.MeshConfigSpec{
		ClusterSet: v1alpha3.ClusterSetSpec{Properties: spoke.NonNil(spoke.ConvertSlice(in.ClusterSet.Properties, func(p ClusterPropertySpec) v1alpha3.ClusterPropertySpec {
			return v1alpha3.ClusterPropertySpec(p)
		}))},
		Sidecar: v1alpha3.SidecarSpec{
			EnablePrivilegedInitContainer: sc.EnablePrivilegedInitContainer,
			LogLevel:                      sc.LogLevel,
			SidecarImage:                  sc.SidecarImage,
			SidecarDisabledMTLS:           sc.SidecarDisabledMTLS,
			MaxDataPlaneConnections:       sc.MaxDataPlaneConnections,
			ConfigResyncInterval:          sc.ConfigResyncInterval,
			SidecarTimeout:                sc.SidecarTimeout,
			Resources:                     sc.Resources,
			TLSMinProtocolVersion:         sc.TLSMinProtocolVersion,
			TLSMaxProtocolVersion:         sc.TLSMaxProtocolVersion,
			CipherSuites:                  sc.CipherSuites,
			ECDHCurves:                    sc.ECDHCurves,
			LocalProxyMode:                v1alpha3.LocalProxyMode(sc.LocalProxyMode),
			LocalDNSProxy: v1alpha3.LocalDNSProxy{
				Enable:                           sc.LocalDNSProxy.Enable,
				PrimaryUpstreamDNSServerIPAddr:   sc.LocalDNSProxy.PrimaryUpstreamDNSServerIPAddr,
				SecondaryUpstreamDNSServerIPAddr: sc.LocalDNSProxy.SecondaryUpstreamDNSServerIPAddr,
			},
		},
		RepoServer: v1alpha3.RepoServerSpec{IPAddr: in.RepoServer.IPAddr, Codebase: in.RepoServer.Codebase},
		Traffic: v1alpha3.TrafficSpec{
			InterceptionMode:                  tr.InterceptionMode,
			EnableEgress:                      tr.EnableEgress,
			OutboundIPRangeExclusionList:      spoke.NonNil(tr.OutboundIPRangeExclusionList),
			OutboundIPRangeInclusionList:      spoke.NonNil(tr.OutboundIPRangeInclusionList),
			OutboundPortExclusionList:         spoke.NonNil(tr.OutboundPortExclusionList),
			InboundPortExclusionList:          spoke.NonNil(tr.InboundPortExclusionList),
			EnablePermissiveTrafficPolicyMode: tr.EnablePermissiveTrafficPolicyMode,
			InboundExternalAuthorization:      v1alpha3.ExternalAuthzSpec(tr.InboundExternalAuthorization),
			NetworkInterfaceExclusionList:     spoke.NonNil(tr.NetworkInterfaceExclusionList),
			HTTP1PerRequestLoadBalancing:      tr.HTTP1PerRequestLoadBalancing,
			HTTP2PerRequestLoadBalancing:      tr.HTTP2PerRequestLoadBalancing,
			ServiceAccessMode:                 v1alpha3.ServiceAccessMode(tr.ServiceAccessMode),
		},
		Observability: v1alpha3.ObservabilitySpec{
			FSMLogLevel: ob.FSMLogLevel,
			Tracing:     v1alpha3.TracingSpec(ob.Tracing),
			RemoteLogging: v1alpha3.RemoteLoggingSpec{
				Enable: ob.RemoteLogging.Enable, Level: ob.RemoteLogging.Level, Port: ob.RemoteLogging.Port,
				Address: ob.RemoteLogging.Address, Endpoint: ob.RemoteLogging.Endpoint,
				Authorization: ob.RemoteLogging.Authorization, SampledFraction: ob.RemoteLogging.SampledFraction,
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
			InboundTCPChains:   spoke.NonNil(spoke.ConvertSlice(in.PluginChains.InboundTCPChains, pluginToHub)),
			InboundHTTPChains:  spoke.NonNil(spoke.ConvertSlice(in.PluginChains.InboundHTTPChains, pluginToHub)),
			OutboundTCPChains:  spoke.NonNil(spoke.ConvertSlice(in.PluginChains.OutboundTCPChains, pluginToHub)),
			OutboundHTTPChains: spoke.NonNil(spoke.ConvertSlice(in.PluginChains.OutboundHTTPChains, pluginToHub)),
		},
	}
}

// specFromHub converts the fields v1alpha2 and v1alpha3 share.
func specFromHub(in *v1alpha3.MeshConfigSpec) MeshConfigSpec {
	sc, tr, ob, ff := in.Sidecar, in.Traffic, in.Observability, in.FeatureFlags
	return MeshConfigSpec{
		ClusterSet: ClusterSetSpec{Properties: spoke.NonNil(spoke.ConvertSlice(in.ClusterSet.Properties, func(p v1alpha3.ClusterPropertySpec) ClusterPropertySpec {
			return ClusterPropertySpec(p)
		}))},
		Sidecar: SidecarSpec{
			EnablePrivilegedInitContainer: sc.EnablePrivilegedInitContainer,
			LogLevel:                      sc.LogLevel,
			SidecarImage:                  sc.SidecarImage,
			SidecarDisabledMTLS:           sc.SidecarDisabledMTLS,
			MaxDataPlaneConnections:       sc.MaxDataPlaneConnections,
			ConfigResyncInterval:          sc.ConfigResyncInterval,
			SidecarTimeout:                sc.SidecarTimeout,
			Resources:                     sc.Resources,
			TLSMinProtocolVersion:         sc.TLSMinProtocolVersion,
			TLSMaxProtocolVersion:         sc.TLSMaxProtocolVersion,
			CipherSuites:                  sc.CipherSuites,
			ECDHCurves:                    sc.ECDHCurves,
			LocalProxyMode:                string(sc.LocalProxyMode),
			LocalDNSProxy: LocalDNSProxy{
				Enable:                           sc.LocalDNSProxy.Enable,
				PrimaryUpstreamDNSServerIPAddr:   sc.LocalDNSProxy.PrimaryUpstreamDNSServerIPAddr,
				SecondaryUpstreamDNSServerIPAddr: sc.LocalDNSProxy.SecondaryUpstreamDNSServerIPAddr,
			},
		},
		RepoServer: RepoServerSpec{IPAddr: in.RepoServer.IPAddr, Codebase: in.RepoServer.Codebase},
		Traffic: TrafficSpec{
			InterceptionMode:                  tr.InterceptionMode,
			EnableEgress:                      tr.EnableEgress,
			OutboundIPRangeExclusionList:      spoke.NonNil(tr.OutboundIPRangeExclusionList),
			OutboundIPRangeInclusionList:      spoke.NonNil(tr.OutboundIPRangeInclusionList),
			OutboundPortExclusionList:         spoke.NonNil(tr.OutboundPortExclusionList),
			InboundPortExclusionList:          spoke.NonNil(tr.InboundPortExclusionList),
			EnablePermissiveTrafficPolicyMode: tr.EnablePermissiveTrafficPolicyMode,
			InboundExternalAuthorization:      ExternalAuthzSpec(tr.InboundExternalAuthorization),
			NetworkInterfaceExclusionList:     spoke.NonNil(tr.NetworkInterfaceExclusionList),
			HTTP1PerRequestLoadBalancing:      tr.HTTP1PerRequestLoadBalancing,
			HTTP2PerRequestLoadBalancing:      tr.HTTP2PerRequestLoadBalancing,
			ServiceAccessMode:                 string(tr.ServiceAccessMode),
		},
		Observability: ObservabilitySpec{
			FSMLogLevel: ob.FSMLogLevel,
			Tracing:     TracingSpec(ob.Tracing),
			RemoteLogging: RemoteLoggingSpec{
				Enable: ob.RemoteLogging.Enable, Level: ob.RemoteLogging.Level, Port: ob.RemoteLogging.Port,
				Address: ob.RemoteLogging.Address, Endpoint: ob.RemoteLogging.Endpoint,
				Authorization: ob.RemoteLogging.Authorization, SampledFraction: ob.RemoteLogging.SampledFraction,
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
			InboundTCPChains:   spoke.NonNil(spoke.ConvertSlice(in.PluginChains.InboundTCPChains, pluginFromHub)),
			InboundHTTPChains:  spoke.NonNil(spoke.ConvertSlice(in.PluginChains.InboundHTTPChains, pluginFromHub)),
			OutboundTCPChains:  spoke.NonNil(spoke.ConvertSlice(in.PluginChains.OutboundTCPChains, pluginFromHub)),
			OutboundHTTPChains: spoke.NonNil(spoke.ConvertSlice(in.PluginChains.OutboundHTTPChains, pluginFromHub)),
		},
	}
}

func pluginToHub(p PluginChainSpec) v1alpha3.PluginChainSpec   { return v1alpha3.PluginChainSpec(p) }
func pluginFromHub(p v1alpha3.PluginChainSpec) PluginChainSpec { return PluginChainSpec(p) }
