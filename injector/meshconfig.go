package injector

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/util/validation/field"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// SettingsFromMeshConfig maps a MeshConfig onto the injector's settings;
// fields left empty keep their defaults.
func SettingsFromMeshConfig(mc *configv1alpha3.MeshConfig) Settings {
	s := DefaultSettings()
	sc := &mc.Spec.Sidecar
	s.SidecarImage = sc.SidecarImage
	if sc.LogLevel != "" {
		s.LogLevel = sc.LogLevel
		if pipy, replaced, _ := rules.SidecarLogLevel(nil, sc.LogLevel); replaced {
			s.fellBack = append(s.fellBack, fmt.Sprintf("spec.sidecar.logLevel %q is not a level Pipy knows: sidecars start with --log-level=%s (FSM passed it on and Pipy exited at start)", sc.LogLevel, pipy))
		}
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
	// 0 is "unset". A negative port is read as FSM v1.5.1 reads it
	// (GetProxyServerPort: any port not above 0 is 6060), so a MeshConfig
	// FSM ran with keeps its other settings here; the validator denies
	// writing one.
	switch {
	case rs.Port > 0:
		s.RepoServerPort = int(rs.Port)
	case rs.Port < 0:
		s.fellBack = append(s.fellBack, fmt.Sprintf("spec.repoServer.port %d is not a port: %d is used, as FSM does", rs.Port, DefaultRepoServerPort))
	}

	tr := &mc.Spec.Traffic
	if tr.InterceptionMode != "" {
		s.InterceptionMode = tr.InterceptionMode
	}
	trp := field.NewPath("spec", "traffic")
	s.OutboundIPRangeExclusionList, s.exclFrom = s.iptablesRanges(trp.Child("outboundIPRangeExclusionList"), tr.OutboundIPRangeExclusionList)
	s.OutboundIPRangeInclusionList, s.inclFrom = s.iptablesRanges(trp.Child("outboundIPRangeInclusionList"), tr.OutboundIPRangeInclusionList)
	s.NetworkInterfaceExclusionList = append([]string(nil), tr.NetworkInterfaceExclusionList...)
	for _, p := range tr.OutboundPortExclusionList {
		s.OutboundPortExclusionList = append(s.OutboundPortExclusionList, int(p))
	}
	for _, p := range tr.InboundPortExclusionList {
		s.InboundPortExclusionList = append(s.InboundPortExclusionList, int(p))
	}
	// Out of range, FSM v1.5.1 logs it and uses 2048 bits
	// (GetCertKeyBitSize); rejecting the whole MeshConfig instead would drop
	// every other setting of a mesh FSM ran with.
	s.CertKeyBitSize = mc.Spec.Certificate.CertKeyBitSize
	if b := s.CertKeyBitSize; b != 0 && (b < rules.MinCertKeyBitSize || b > rules.MaxCertKeyBitSize) {
		s.fellBack = append(s.fellBack, fmt.Sprintf("spec.certificate.certKeyBitSize %d is outside %d-%d: %d is used, as FSM does",
			b, rules.MinCertKeyBitSize, rules.MaxCertKeyBitSize, rules.MinCertKeyBitSize))
		s.CertKeyBitSize = rules.MinCertKeyBitSize
	}
	return s
}

// iptablesRanges copies a MeshConfig range list, reading an entry that is
// not a CIDR but that iptables reads as CIDRs (rules.IPTablesRanges: a bare
// address, a dotted netmask, a comma-joined list) as those CIDRs. FSM
// v1.5.1 puts the lists into its iptables rules unparsed, so such an entry
// worked there; refusing it would make the injector ignore the whole
// MeshConfig of a mesh FSM ran. The rule iptables keeps is the same either
// way. from maps each entry returned to the index it was read from.
func (s *Settings) iptablesRanges(p *field.Path, list []string) (out []string, from []int) {
	out, from = make([]string, 0, len(list)), make([]int, 0, len(list))
	for i, v := range list {
		if _, errs := rules.IPRange(nil, v); len(errs) > 0 {
			if pfxs, ok := rules.IPTablesRanges(v); ok {
				read := make([]string, len(pfxs))
				for j, pfx := range pfxs {
					read[j] = pfx.String()
				}
				s.fellBack = append(s.fellBack, fmt.Sprintf("%s %q is read as %s, as FSM's iptables reads it", p.Index(i), v, strings.Join(read, ", ")))
				out = append(out, read...)
				for range read {
					from = append(from, i)
				}
				continue
			}
		}
		out, from = append(out, v), append(from, i)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, from
}

// rangeErrors applies rule to each entry of list under p, indexed as the
// MeshConfig's list is (from: see Settings.exclFrom).
func rangeErrors(p *field.Path, list []string, from []int, rule func(*field.Path, string) (netip.Prefix, field.ErrorList)) field.ErrorList {
	var errs field.ErrorList
	for i, v := range list {
		at := i
		if i < len(from) {
			at = from[i]
		}
		_, e := rule(p.Index(at), v)
		errs = append(errs, e...)
	}
	return errs
}

// Validate applies the MeshConfig rules the injection depends on (package
// meshconfig/rules, the same functions the validator denies a MeshConfig
// with) to the settings, naming the MeshConfig field each value came from, so
// a MeshConfig the validator admitted never fails here, and one stored before
// a rule existed (or while the validator was down) is reported field by
// field. Under NodeLevel interception a pod gets only its uuid label, so
// nothing else is checked: none of it is used.
func (s Settings) Validate() error {
	errs := s.fieldErrors()
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("MeshConfig %w", errs.ToAggregate())
}

// Checked validates s (Validate) and returns it marked as validated, so
// Mutate does not validate it again on every admission: CachedMeshConfig
// checks once per MeshConfig resourceVersion.
func (s Settings) Checked() (Settings, error) {
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	s.validated = true
	return s, nil
}

func (s Settings) fieldErrors() field.ErrorList {
	if s.InterceptionMode == InterceptionNodeLevel {
		return nil
	}
	var errs field.ErrorList
	sc := field.NewPath("spec", "sidecar")
	_, _, logLevelErrs := rules.SidecarLogLevel(sc.Child("logLevel"), s.LogLevel)
	errs = append(errs, logLevelErrs...)
	// The sidecar's image, --admin-port and repo URL go into every pod: a
	// value the validator denies would make the apiserver refuse them all.
	errs = append(errs, rules.Image(sc.Child("sidecarImage"), s.SidecarImage)...)
	errs = append(errs, rules.Enum(sc.Child("localProxyMode"), s.LocalProxyMode, rules.LocalProxyModes...)...)
	errs = append(errs, rules.Resources(sc.Child("resources"), s.Resources)...)
	errs = append(errs, rules.Resources(sc.Child("initResources"), s.InitResources)...)
	errs = append(errs, rules.Resources(sc.Child("healthcheckResources"), s.HealthcheckResources)...)

	errs = append(errs, rules.RepoServerAddr(field.NewPath("spec", "repoServer", "ipaddr"), s.RepoServerIPAddr)...)
	errs = append(errs, rules.Port(field.NewPath("spec", "repoServer", "port"), int64(s.RepoServerPort))...)

	tr := field.NewPath("spec", "traffic")
	errs = append(errs, rules.Enum(tr.Child("interceptionMode"), s.InterceptionMode, rules.InterceptionModes...)...)
	errs = append(errs, rangeErrors(tr.Child("outboundIPRangeExclusionList"), s.OutboundIPRangeExclusionList, s.exclFrom, rules.IPRange)...)
	errs = append(errs, rangeErrors(tr.Child("outboundIPRangeInclusionList"), s.OutboundIPRangeInclusionList, s.inclFrom, rules.InterceptedIPRange)...)
	errs = append(errs, rules.Ports(tr.Child("outboundPortExclusionList"), int64s(s.OutboundPortExclusionList))...)
	errs = append(errs, rules.Ports(tr.Child("inboundPortExclusionList"), int64s(s.InboundPortExclusionList))...)
	errs = append(errs, rules.InterfaceNames(tr.Child("networkInterfaceExclusionList"), s.NetworkInterfaceExclusionList)...)

	if s.CertKeyBitSize != 0 {
		errs = append(errs, rules.CertKeyBitSize(field.NewPath("spec", "certificate", "certKeyBitSize"), int64(s.CertKeyBitSize))...)
	}
	return errs
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
//
// Each resourceVersion is converted and validated once. One the injector
// cannot apply (stored while the validator was down, or before a rule
// existed) never blocks pod creation: the last valid settings stay in use
// (the built-in defaults if none was ever valid), and the rejection is logged
// once, set in fsm_webhooks_injector_meshconfig_rejected{field} and recorded
// as a Warning Event on the MeshConfig. Added to the manager (Start), it
// reports a rejected MeshConfig when it is stored, not at the next pod.
type CachedMeshConfig struct {
	Reader    client.Reader
	Namespace string
	Name      string // default fsmnames.MeshConfigName
	Logger    logr.Logger
	// Recorder, when set, receives the Warning Event on a rejected
	// MeshConfig.
	Recorder EventRecorder

	mu         sync.Mutex
	version    string    // resourceVersion last looked at, valid or not
	versionAt  time.Time // when version was looked at
	settings   Settings
	validFrom  string // resourceVersion settings came from; "" = built-in defaults
	loggedGone bool
	// crdMissing is set while Start finds the MeshConfig kind not served
	// (its CRD not installed): Settings then skips the read, each of which
	// would be a discovery request.
	crdMissing atomic.Bool
	// retryEvery is how often Start looks up the MeshConfig kind until it
	// is served; 0 is crdRetry (tests shorten it).
	retryEvery time.Duration
}

var _ manager.Runnable = (*CachedMeshConfig)(nil)

// Reasons and actions of the Events on a MeshConfig.
const (
	EventMeshConfigRejected = "MeshConfigRejected"
	// EventMeshConfigFellBack: a value FSM reads with a fallback (an out-of-
	// range certKeyBitSize, a negative repoServer.port) is read the same way,
	// and one FSM passed on to a reader that refused it (a log level Pipy
	// does not know) is replaced by what that reader takes;
	// the rest of the MeshConfig applies.
	EventMeshConfigFellBack = "MeshConfigValueReplaced"
	eventActionApply        = "ApplyMeshConfig"
)

// Settings implements MeshConfigSource. The settings it returns passed
// Validate (Checked), so Mutate does not check them again per admission.
func (c *CachedMeshConfig) Settings(ctx context.Context) (Settings, error) {
	name := c.name()
	mc := &configv1alpha3.MeshConfig{}
	noCRD := c.crdMissing.Load()
	var err error
	if !noCRD {
		err = c.Reader.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: name}, mc)
		// No CRD, no MeshConfig: pods are not refused over it.
		noCRD = meta.IsNoMatchError(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if noCRD || apierrors.IsNotFound(err) {
		if !c.loggedGone {
			if c.Logger.GetSink() != nil {
				msg := "no MeshConfig, injecting with built-in defaults"
				if noCRD {
					msg = "no MeshConfig CRD " + fsmnames.MeshConfigCRDName + ", injecting with built-in defaults"
				}
				c.Logger.Info(msg, "namespace", c.Namespace, "name", name)
			}
			// Deleting the MeshConfig asks for the defaults: they become
			// the settings a later invalid MeshConfig falls back to.
			c.loggedGone, c.version, c.validFrom = true, "", ""
			c.settings = checkedDefaults()
			meshConfigRejected.Reset()
		}
		return c.settings, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("reading MeshConfig %s/%s: %w", c.Namespace, name, err)
	}
	c.loggedGone = false
	// The cache hands out the same object until it changes; convert and
	// validate once per resourceVersion.
	if mc.ResourceVersion == "" || mc.ResourceVersion != c.version {
		if c.staleRead(mc.ResourceVersion) {
			// Read before the informer stored the version another caller
			// has applied since: applied again, it would report a replaced
			// version's rejection (log, gauge, Event) as the stored one's
			// until the next read.
			return c.settings, nil
		}
		c.apply(mc)
	}
	return c.settings, nil
}

// staleReadWindow bounds how long after a version was looked at an older one
// read counts as a stale read (made before the informer stored it, the lock
// taken after): far longer than a caller is held between its read and the
// lock, and short enough that after an etcd restore (resource versions go
// back) the restored MeshConfig is applied.
const staleReadWindow = 30 * time.Second

// staleRead says whether rv is older than c.version, looked at a moment ago
// (c.mu held). Versions that do not compare are not.
func (c *CachedMeshConfig) staleRead(rv string) bool {
	if c.version == "" || rv == "" || time.Since(c.versionAt) > staleReadWindow {
		return false
	}
	n, err := resourceversion.CompareResourceVersion(rv, c.version)
	return err == nil && n < 0
}

// apply converts and validates a new resourceVersion of the MeshConfig;
// c.mu is held.
func (c *CachedMeshConfig) apply(mc *configv1alpha3.MeshConfig) {
	if !c.settings.validated {
		c.settings = checkedDefaults() // nothing valid seen yet
	}
	c.version, c.versionAt = mc.ResourceVersion, time.Now()
	s := SettingsFromMeshConfig(mc)
	errs := s.fieldErrors()
	if len(errs) == 0 {
		// Said only of a MeshConfig that applies: a rejected one is
		// reported field by field below.
		if len(s.fellBack) > 0 {
			msg := strings.Join(s.fellBack, "; ")
			if c.Logger.GetSink() != nil {
				c.Logger.Info("MeshConfig values read as FSM reads them: "+msg,
					"namespace", mc.Namespace, "name", mc.Name, "resourceVersion", mc.ResourceVersion)
			}
			if c.Recorder != nil {
				c.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, EventMeshConfigFellBack, eventActionApply, "%s",
					truncateNote("the sidecar injector reads resourceVersion "+mc.ResourceVersion+" as FSM does: "+msg))
			}
		}
		s.validated = true
		c.settings, c.validFrom = s, mc.ResourceVersion
		meshConfigRejected.Reset()
		return
	}
	meshConfigRejections.Inc()
	meshConfigRejected.Reset()
	for _, f := range rejectedFields(errs) {
		meshConfigRejected.WithLabelValues(f).Set(1)
	}
	kept := "the built-in defaults (no valid MeshConfig seen yet)"
	if c.validFrom != "" {
		kept = "the last valid MeshConfig (resourceVersion " + c.validFrom + ")"
	}
	err := fmt.Errorf("MeshConfig %w", errs.ToAggregate())
	if c.Logger.GetSink() != nil {
		c.Logger.Error(err, "MeshConfig rejected: pods are injected with "+kept+" until it is fixed",
			"namespace", mc.Namespace, "name", mc.Name, "resourceVersion", mc.ResourceVersion)
	}
	if c.Recorder != nil {
		c.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, EventMeshConfigRejected, eventActionApply, "%s",
			truncateNote(fmt.Sprintf("the sidecar injector cannot apply resourceVersion %s and injects pods with %s: %v",
				mc.ResourceVersion, kept, err)))
	}
}

func (c *CachedMeshConfig) name() string {
	if c.Name == "" {
		return fsmnames.MeshConfigName
	}
	return c.Name
}

// Start implements manager.Runnable: every MeshConfig change stored is
// checked when the informer delivers it, so a rejection is reported (log,
// metric, Event) right away rather than at the next pod. c.Reader must be a
// cache (cache.Informers).
func (c *CachedMeshConfig) Start(ctx context.Context) error {
	informers, ok := c.Reader.(cache.Informers)
	if !ok {
		return fmt.Errorf("injector: CachedMeshConfig.Reader %T is not a cache: cannot watch MeshConfig %s/%s", c.Reader, c.Namespace, c.name())
	}
	inf := c.informer(ctx, informers)
	if inf == nil {
		return nil
	}
	check := func(obj any) {
		if o, ok := obj.(client.Object); ok && (o.GetNamespace() != c.Namespace || o.GetName() != c.name()) {
			return
		}
		if _, err := c.Settings(ctx); err != nil && ctx.Err() == nil && c.Logger.GetSink() != nil {
			c.Logger.Error(err, "checking the MeshConfig")
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, o any) { check(o) },
		DeleteFunc: check,
	})
	if err != nil {
		return fmt.Errorf("injector: watching MeshConfig %s/%s: %w", c.Namespace, c.name(), err)
	}
	<-ctx.Done()
	return inf.RemoveEventHandler(reg)
}

// crdRetry is how often Start looks for the MeshConfig CRD while it is not
// installed.
const crdRetry = 10 * time.Second

// informer is the MeshConfig informer, once the apiserver serves the kind:
// while its CRD is not installed (deleted by hand, an install whose CRD
// apply lags) it is looked up every crdRetry, pods being injected with the
// built-in defaults meanwhile, rather than ending the manager and with it
// every webhook. A look-up that fails otherwise (the apiserver restarting
// or overloaded) is retried the same way, for the same reason. nil when
// ctx ends first.
func (c *CachedMeshConfig) informer(ctx context.Context, informers cache.Informers) cache.Informer {
	for {
		inf, err := informers.GetInformer(ctx, &configv1alpha3.MeshConfig{})
		switch {
		case err == nil:
			if c.crdMissing.Swap(false) && c.Logger.GetSink() != nil {
				c.Logger.Info("MeshConfig CRD installed: watching MeshConfig", "crd", fsmnames.MeshConfigCRDName, "namespace", c.Namespace, "name", c.name())
			}
			return inf
		case ctx.Err() != nil:
			return nil
		case meta.IsNoMatchError(err):
			if !c.crdMissing.Swap(true) && c.Logger.GetSink() != nil {
				c.Logger.Info("MeshConfig CRD "+fsmnames.MeshConfigCRDName+" is not installed: pods are injected with the built-in defaults until it is "+
					"(install it with the chart, or `fsm-webhooks install-crds`)", "namespace", c.Namespace, "name", c.name(), "retryIn", c.retryInterval())
			}
		default:
			if c.Logger.GetSink() != nil {
				c.Logger.Error(err, "watching MeshConfig: looking up its kind failed; retrying", "namespace", c.Namespace, "name", c.name(), "retryIn", c.retryInterval())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.retryInterval()):
		}
	}
}

func (c *CachedMeshConfig) retryInterval() time.Duration {
	if c.retryEvery > 0 {
		return c.retryEvery
	}
	return crdRetry
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica injects, so every replica checks its own settings.
func (c *CachedMeshConfig) NeedLeaderElection() bool { return false }

// checkedDefaults are DefaultSettings, which always pass Validate.
func checkedDefaults() Settings {
	s, err := DefaultSettings().Checked()
	if err != nil {
		panic(fmt.Sprintf("injector: built-in default settings are invalid: %v", err))
	}
	return s
}

// rejectedFields are the MeshConfig fields errs name, without list indexes
// or map keys (spec.traffic.outboundIPRangeInclusionList[1] ->
// spec.traffic.outboundIPRangeInclusionList), so the metric's field label
// takes only as many values as the MeshConfig has fields. Sorted, unique.
func rejectedFields(errs field.ErrorList) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range errs {
		f := e.Field
		if i := strings.IndexByte(f, '['); i >= 0 {
			f = f[:i]
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// maxEventNote is the apiserver's limit on an Event's note (events.k8s.io/v1).
const maxEventNote = 1024

// truncateNote cuts note to maxEventNote bytes on a rune boundary: a longer
// note makes the apiserver refuse the whole Event.
func truncateNote(note string) string {
	if len(note) <= maxEventNote {
		return note
	}
	const ellipsis = "..."
	cut := maxEventNote - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + ellipsis
}

var (
	meshConfigRejected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_injector_meshconfig_rejected",
		Help: "1 for each field of the stored MeshConfig the sidecar injector cannot apply; while any is set, pods are injected with the last valid MeshConfig (or the built-in defaults).",
	}, []string{"field"})
	meshConfigRejections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_injector_meshconfig_rejections_total",
		Help: "MeshConfig resourceVersions the sidecar injector rejected.",
	})
)

func init() {
	metrics.Registry.MustRegister(meshConfigRejected, meshConfigRejections)
}
