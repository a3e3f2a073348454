// Package spoke holds what the v1alpha1 and v1alpha2 conversions to and from
// the v1alpha3 hub have in common: the v1alpha3 data neither spoke can hold
// (kept in lossless.AnnotationV1Alpha3Fields), the sidecar fields both spokes
// have and v1alpha3 dropped (kept in lossless.AnnotationV1Alpha2Fields), and
// the steps around them. Each spoke keeps the field-by-field mapping of its
// own types.
package spoke

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// HubOnly is the part of the lossless.AnnotationV1Alpha3Fields JSON that is
// the same for both spokes: the v1alpha3 sections and fields neither has. A
// spoke embeds it next to its own sidecar, traffic and observability
// sections (the fields there differ between v1alpha1 and v1alpha2); the
// lossless helpers treat the embedded pointers as sections of the spoke's
// struct. Nil means "the default" (DefaultHubOnly).
type HubOnly struct {
	ClusterSet    *ClusterSet                 `json:"clusterSet,omitempty"`
	RepoServer    *RepoServer                 `json:"repoServer,omitempty"`
	FeatureFlags  *FeatureFlags               `json:"featureFlags,omitempty"`
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

// ClusterSet is the v1alpha3 clusterSet without properties (which the
// spokes have).
type ClusterSet struct {
	IsManaged       bool   `json:"isManaged"`
	UID             string `json:"uid"`
	Region          string `json:"region"`
	Zone            string `json:"zone"`
	Group           string `json:"group"`
	Name            string `json:"name"`
	ControlPlaneUID string `json:"controlPlaneUID"`
}

// RepoServer is the v1alpha3 repoServer field the spokes lack.
type RepoServer struct {
	Port int32 `json:"port"`
}

// FeatureFlags are the v1alpha3 feature flags the spokes lack.
type FeatureFlags struct {
	EnableTrafficWarmupPolicy             bool `json:"enableTrafficWarmupPolicy"`
	EnableSidecarPrettyConfig             bool `json:"enableSidecarPrettyConfig"`
	EnableValidateGatewayListenerHostname bool `json:"enableValidateGatewayListenerHostname"`
	EnableValidateHTTPRouteHostnames      bool `json:"enableValidateHTTPRouteHostnames"`
	EnableValidateGRPCRouteHostnames      bool `json:"enableValidateGRPCRouteHostnames"`
	EnableValidateTLSRouteHostnames       bool `json:"enableValidateTLSRouteHostnames"`
	UseEndpointSlicesForGateway           bool `json:"useEndpointSlicesForGateway"`
	DropRouteRuleIfNoAvailableBackends    bool `json:"dropRouteRuleIfNoAvailableBackends"`
}

// Sidecar are the v1alpha3 sidecar fields neither spoke has; a spoke's
// sidecar section embeds it.
type Sidecar struct {
	CompressConfig                  *bool                       `json:"compressConfig,omitempty"`
	HoldApplicationUntilProxyStarts *bool                       `json:"holdApplicationUntilProxyStarts,omitempty"`
	GracefulExitUntilDownstreamEnds *bool                       `json:"gracefulExitUntilDownstreamEnds,omitempty"`
	InitResources                   corev1.ResourceRequirements `json:"initResources"`
	HealthcheckResources            corev1.ResourceRequirements `json:"healthcheckResources"`
	XNetDNSProxy                    v1alpha3.XNetDNSProxy       `json:"xnetDNSProxy"`
}

// DefaultHubOnly is what a spoke object without the annotation gets in
// v1alpha3: what the v1alpha3 schema defaults (the apiserver applies those
// defaults to the stored object anyway), required objects with their
// defaults, optional sections absent. Built fresh on each call because
// lossless.FillDefaults hands its sections to the converted object.
func DefaultHubOnly() HubOnly {
	image, misc, connector := v1alpha3.DefaultImage(), v1alpha3.DefaultMisc(), v1alpha3.DefaultConnector()
	return HubOnly{
		ClusterSet: &ClusterSet{
			Region: v1alpha3.DefaultClusterSetValue, Zone: v1alpha3.DefaultClusterSetValue, Group: v1alpha3.DefaultClusterSetValue,
		},
		RepoServer:   &RepoServer{},
		FeatureFlags: &FeatureFlags{},
		Image:        &image,
		Misc:         &misc,
		Connector:    &connector,
	}
}

// DefaultSidecar is the v1alpha3 schema's default of the Sidecar fields.
func DefaultSidecar() Sidecar {
	return Sidecar{CompressConfig: ptr.To(true), HoldApplicationUntilProxyStarts: ptr.To(true), GracefulExitUntilDownstreamEnds: ptr.To(true)}
}

// HubOnlyOf extracts the HubOnly sections of s (nothing pruned yet).
func HubOnlyOf(s *v1alpha3.MeshConfigSpec) HubOnly {
	c, ff := s.ClusterSet, s.FeatureFlags
	return HubOnly{
		ClusterSet: &ClusterSet{
			IsManaged: c.IsManaged, UID: c.UID, Region: c.Region, Zone: c.Zone, Group: c.Group, Name: c.Name, ControlPlaneUID: c.ControlPlaneUID,
		},
		RepoServer: &RepoServer{Port: s.RepoServer.Port},
		FeatureFlags: &FeatureFlags{
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

// ApplyTo writes the sections into s; every section must be set
// (lossless.FillDefaults).
func (h *HubOnly) ApplyTo(s *v1alpha3.MeshConfigSpec) {
	c := h.ClusterSet
	s.ClusterSet.IsManaged, s.ClusterSet.UID, s.ClusterSet.Region, s.ClusterSet.Zone = c.IsManaged, c.UID, c.Region, c.Zone
	s.ClusterSet.Group, s.ClusterSet.Name, s.ClusterSet.ControlPlaneUID = c.Group, c.Name, c.ControlPlaneUID

	s.RepoServer.Port = h.RepoServer.Port

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

// SidecarOf extracts the Sidecar fields of s.
func SidecarOf(s *v1alpha3.SidecarSpec) Sidecar {
	return Sidecar{
		CompressConfig: s.CompressConfig, HoldApplicationUntilProxyStarts: s.HoldApplicationUntilProxyStarts,
		GracefulExitUntilDownstreamEnds: s.GracefulExitUntilDownstreamEnds,
		InitResources:                   s.InitResources, HealthcheckResources: s.HealthcheckResources,
		XNetDNSProxy: s.XNetDNSProxy,
	}
}

// ApplyTo writes the fields into s.
func (sc *Sidecar) ApplyTo(s *v1alpha3.SidecarSpec) {
	s.CompressConfig = sc.CompressConfig
	s.HoldApplicationUntilProxyStarts = sc.HoldApplicationUntilProxyStarts
	s.GracefulExitUntilDownstreamEnds = sc.GracefulExitUntilDownstreamEnds
	s.InitResources, s.HealthcheckResources = sc.InitResources, sc.HealthcheckResources
	s.XNetDNSProxy = sc.XNetDNSProxy
}

// RestoreHub reads the hub data an earlier conversion down kept in meta's
// lossless.AnnotationV1Alpha3Fields into kept (removing the annotation) and
// fills what it lacks: a section it lacks from defaults, a field a section it
// has lacks from the v1alpha3 schema's defaults (hubSpecDefaults), so a
// hand-written partial section ({"ingress":{"type":"NodePort"}}) becomes
// what a v1alpha3 write of it stores.
func RestoreHub[K any](meta *metav1.ObjectMeta, kept, defaults *K) error {
	if _, err := lossless.UnstashDefaulted(meta, lossless.AnnotationV1Alpha3Fields, kept, hubSpecDefaults); err != nil {
		return err
	}
	lossless.FillDefaults(kept, defaults)
	return nil
}

// KeepHub stores in meta's lossless.AnnotationV1Alpha3Fields the sections of
// kept that differ from defaults (RestoreHub fills those back); with none,
// the annotation is removed. A field the schema defaults is written even
// when omitempty would drop it, so RestoreHub's defaulting keeps it as it
// was (a nil warmup.enable stays nil, a "" duration stays "").
func KeepHub[K any](meta *metav1.ObjectMeta, kept, defaults *K) error {
	lossless.PruneDefaults(kept, defaults)
	return lossless.StashDefaulted(meta, lossless.AnnotationV1Alpha3Fields, kept, !lossless.IsEmpty(kept), hubSpecDefaults)
}

// Legacy is the JSON of lossless.AnnotationV1Alpha2Fields: the sidecar
// fields both spokes have and v1alpha3 dropped. D is the spoke's
// SidecarDriverSpec (the same JSON in both).
type Legacy[D any] struct {
	Sidecar LegacySidecar[D] `json:"sidecar"`
}

// LegacySidecar is the sidecar part of Legacy.
type LegacySidecar[D any] struct {
	SidecarClass       string `json:"sidecarClass,omitempty"`
	InitContainerImage string `json:"initContainerImage,omitempty"`
	SidecarDrivers     []D    `json:"sidecarDrivers,omitempty"`
}

// KeepLegacy stores l in meta's lossless.AnnotationV1Alpha2Fields, or removes
// the annotation when l is empty.
func KeepLegacy[D any](meta *metav1.ObjectMeta, l Legacy[D]) error {
	empty := l.Sidecar.SidecarClass == "" && l.Sidecar.InitContainerImage == "" && len(l.Sidecar.SidecarDrivers) == 0
	return lossless.Stash(meta, lossless.AnnotationV1Alpha2Fields, l, !empty)
}

// RestoreLegacy reads (and removes) meta's lossless.AnnotationV1Alpha2Fields;
// without it the fields are empty.
func RestoreLegacy[D any](meta *metav1.ObjectMeta) (Legacy[D], error) {
	var l Legacy[D]
	_, err := lossless.Unstash(meta, lossless.AnnotationV1Alpha2Fields, &l)
	return l, err
}

// NonNil is l, or an empty list for nil. Conversion gives it the lists the
// schema of the version it converts to requires (clusterSet.properties, the
// traffic port/IP lists, the plugin chains; the same in every version): a
// nil slice is written as null, which the apiserver drops, and the object
// served would then fail its own version's schema ("Required value") when
// written back as read (kubectl create -f of a get -o yaml) or edited inside
// that section. v1alpha3 requires none of these sections, so a v1alpha3
// object may well lack them.
func NonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// ConvertSlice maps in with f, keeping nil as nil.
func ConvertSlice[A, B any](in []A, f func(A) B) []B {
	if in == nil {
		return nil
	}
	out := make([]B, len(in))
	for i := range in {
		out[i] = f(in[i])
	}
	return out
}
