package injector

import (
	"context"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// MeshConfigName is the name of the mesh's MeshConfig in the fsm namespace.
const MeshConfigName = "fsm-mesh-config"

// SettingsFromMeshConfig maps a MeshConfig onto the injector's settings;
// fields left empty keep their defaults.
func SettingsFromMeshConfig(mc *configv1alpha3.MeshConfig) Settings {
	s := DefaultSettings()
	sc := &mc.Spec.Sidecar
	s.SidecarImage = sc.SidecarImage
	if sc.LogLevel != "" {
		s.LogLevel = sc.LogLevel
	}
	s.Resources = *sc.Resources.DeepCopy()
	s.InitResources = *sc.InitResources.DeepCopy()
	s.HealthcheckResources = *sc.HealthcheckResources.DeepCopy()
	s.EnablePrivilegedInitContainer = sc.EnablePrivilegedInitContainer
	if sc.LocalProxyMode != "" {
		s.LocalProxyMode = string(sc.LocalProxyMode)
	}
	if sc.HoldApplicationUntilProxyStarts != nil {
		s.HoldApplicationUntilProxyStarts = *sc.HoldApplicationUntilProxyStarts
	}
	if sc.GracefulExitUntilDownstreamEnds != nil {
		s.GracefulExitUntilDownstreamEnds = *sc.GracefulExitUntilDownstreamEnds
	}
	s.LocalDNSProxy = sc.LocalDNSProxy.Enable
	s.TLSMinProtocolVersion = sc.TLSMinProtocolVersion
	s.TLSMaxProtocolVersion = sc.TLSMaxProtocolVersion
	s.CipherSuites = append([]string(nil), sc.CipherSuites...)
	s.ECDHCurves = append([]string(nil), sc.ECDHCurves...)

	rs := &mc.Spec.RepoServer
	if rs.IPAddr != "" {
		s.RepoServerIPAddr = rs.IPAddr
	}
	s.RepoServerCodebase = rs.Codebase
	if rs.Port > 0 {
		s.RepoServerPort = int(rs.Port)
	}

	tr := &mc.Spec.Traffic
	if tr.InterceptionMode != "" {
		s.InterceptionMode = tr.InterceptionMode
	}
	s.OutboundIPRangeExclusionList = append([]string(nil), tr.OutboundIPRangeExclusionList...)
	s.OutboundIPRangeInclusionList = append([]string(nil), tr.OutboundIPRangeInclusionList...)
	s.NetworkInterfaceExclusionList = append([]string(nil), tr.NetworkInterfaceExclusionList...)
	for _, p := range tr.OutboundPortExclusionList {
		s.OutboundPortExclusionList = append(s.OutboundPortExclusionList, int(p))
	}
	for _, p := range tr.InboundPortExclusionList {
		s.InboundPortExclusionList = append(s.InboundPortExclusionList, int(p))
	}
	s.CertKeyBitSize = mc.Spec.Certificate.CertKeyBitSize
	return s
}

// Validate applies the MeshConfig rules the injection depends on (package
// meshconfig/rules, the same functions the validator denies a MeshConfig
// with) to the settings, naming the MeshConfig field each value came from.
// Mutate calls it first, so a MeshConfig the validator admitted never fails
// here, and one stored before a rule existed is reported field by field.
func (s Settings) Validate() error {
	var errs field.ErrorList
	sc := field.NewPath("spec", "sidecar")
	errs = append(errs, rules.Enum(sc.Child("logLevel"), s.LogLevel, rules.SidecarLogLevels...)...)
	errs = append(errs, rules.Enum(sc.Child("localProxyMode"), s.LocalProxyMode, rules.LocalProxyModes...)...)
	errs = append(errs, rules.Resources(sc.Child("resources"), s.Resources)...)
	errs = append(errs, rules.Resources(sc.Child("initResources"), s.InitResources)...)
	errs = append(errs, rules.Resources(sc.Child("healthcheckResources"), s.HealthcheckResources)...)

	errs = append(errs, rules.RepoServerAddr(field.NewPath("spec", "repoServer", "ipaddr"), s.RepoServerIPAddr)...)

	tr := field.NewPath("spec", "traffic")
	errs = append(errs, rules.Enum(tr.Child("interceptionMode"), s.InterceptionMode, rules.InterceptionModes...)...)
	_, e := rules.IPRanges(tr.Child("outboundIPRangeExclusionList"), s.OutboundIPRangeExclusionList)
	errs = append(errs, e...)
	_, e = rules.InterceptedIPRanges(tr.Child("outboundIPRangeInclusionList"), s.OutboundIPRangeInclusionList)
	errs = append(errs, e...)
	errs = append(errs, rules.Ports(tr.Child("outboundPortExclusionList"), int64s(s.OutboundPortExclusionList))...)
	errs = append(errs, rules.Ports(tr.Child("inboundPortExclusionList"), int64s(s.InboundPortExclusionList))...)
	errs = append(errs, rules.InterfaceNames(tr.Child("networkInterfaceExclusionList"), s.NetworkInterfaceExclusionList)...)

	if s.CertKeyBitSize != 0 {
		errs = append(errs, rules.CertKeyBitSize(field.NewPath("spec", "certificate", "certKeyBitSize"), int64(s.CertKeyBitSize))...)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("MeshConfig %w", errs.ToAggregate())
}

func int64s(vs []int) []int64 {
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = int64(v)
	}
	return out
}

// CachedMeshConfig is a MeshConfigSource reading the mesh's MeshConfig from an
// informer-backed reader (a controller-runtime cache): no API call per
// admission, and a change applies to the next pod. Without a MeshConfig it
// returns DefaultSettings and logs that once (until one appears again).
type CachedMeshConfig struct {
	Reader    client.Reader
	Namespace string
	Name      string // default MeshConfigName
	Logger    logr.Logger

	mu         sync.Mutex
	version    string
	settings   Settings
	loggedGone bool
}

// Settings implements MeshConfigSource.
func (c *CachedMeshConfig) Settings(ctx context.Context) (Settings, error) {
	name := c.Name
	if name == "" {
		name = MeshConfigName
	}
	mc := &configv1alpha3.MeshConfig{}
	err := c.Reader.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: name}, mc)
	c.mu.Lock()
	defer c.mu.Unlock()
	if apierrors.IsNotFound(err) {
		if !c.loggedGone && c.Logger.GetSink() != nil {
			c.Logger.Info("no MeshConfig, injecting with built-in defaults", "namespace", c.Namespace, "name", name)
		}
		c.loggedGone, c.version = true, ""
		return DefaultSettings(), nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("reading MeshConfig %s/%s: %w", c.Namespace, name, err)
	}
	c.loggedGone = false
	// The cache hands out the same object until it changes; convert once
	// per resourceVersion.
	if mc.ResourceVersion == "" || mc.ResourceVersion != c.version {
		c.settings, c.version = SettingsFromMeshConfig(mc), mc.ResourceVersion
	}
	return c.settings, nil
}
