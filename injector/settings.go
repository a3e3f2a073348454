// Package injector is the sidecar injector: it decides whether a pod gets a
// Pipy sidecar, builds the mutated pod and the JSON patch, and creates the
// per-pod bootstrap Secret. Decision and mutation are pure functions of their
// inputs; the admission Handler and the Secret controller are the only parts
// that talk to the API server.
package injector

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// Names and ports FSM users and the Pipy sidecar rely on.
const (
	SidecarContainerName     = "sidecar"
	InitContainerName        = "fsm-init"
	HealthcheckContainerName = "fsm-healthcheck"
	BootstrapVolumeName      = "sidecar-bootstrap-config-volume"
	BootstrapSecretPrefix    = fsmnames.BootstrapSecretPrefix
	BootstrapMountPath       = "/etc/pipy"
	ProxyUUIDLabel           = "fsm-proxy-uuid"

	// Bootstrap Secret keys.
	BootstrapConfigKey = "bootstrap.yaml"
	CACertKey          = "cacert.pem"
	RepoCertKey        = "repo_cert.pem"
	RepoKeyKey         = "repo_key.pem"

	ProxyUID                int64 = 1500
	ProxyAdminPort          int32 = 15000
	ProxyOutboundPort       int32 = 15001
	ProxyInboundPort        int32 = 15003
	ProxyMetricsPort        int32 = 15010
	LivenessProbePort       int32 = 15901
	ReadinessProbePort      int32 = 15902
	StartupProbePort        int32 = 15903
	HealthcheckPort         int32 = 15904
	HealthcheckPath               = "/fsm-healthcheck"
	MetricsPath                   = "/stats/prometheus"
	DefaultRepoServerPort         = 6060
	DefaultSidecarLogLevel        = "error"
	sidecarCertOrganization       = "Flomesh Service Mesh"
	waitPipyCommand               = "/usr/local/bin/wait-pipy"
	gracefulKillCommand           = "/usr/local/bin/gkill"
	// healthcheckCommand: the fsm-healthcheck image has no entrypoint.
	healthcheckCommand   = "/fsm-healthcheck"
	defaultClusterDomain = "cluster.local"
	defaultTrustDomain   = "cluster.local"
)

// ControllerServiceName is FSM's controller Service in the fsm namespace
// (FSM's CONTROLLER_SVC_NAME). Sidecars fetch their configuration from it
// (the repo URL), and with spec.sidecar.localDNSProxy.enable its ClusterIP is
// the pod's DNS server.
const ControllerServiceName = "fsm-controller"

// The images FSM v1.5.1 injects by default, used when neither a MeshConfig,
// a namespace or pod annotation, nor a flag / FSM_DEFAULT_*_IMAGE names one.
const (
	DefaultSidecarImage     = "flomesh/pipy:1.5.12"
	DefaultInitImage        = "flomesh/fsm-sidecar-init:1.5.1"
	DefaultHealthcheckImage = "flomesh/fsm-healthcheck:1.5.1"
)

// DefaultBootstrapCertValidity is the validity of a sidecar's bootstrap
// certificate. Nothing rotates a running pod's bootstrap Secret, so it lives as
// long as FSM/OSM give it: a decade.
const DefaultBootstrapCertValidity = 87600 * time.Hour

// Interception modes (MeshConfig spec.traffic.interceptionMode).
const (
	InterceptionPodLevel  = "PodLevel"
	InterceptionNodeLevel = "NodeLevel"
)

// Local proxy modes (MeshConfig spec.sidecar.localProxyMode).
const (
	LocalProxyModeLocalhost = "Localhost"
	LocalProxyModePodIP     = "PodIP"
)

// Settings is the part of MeshConfig the injector uses. The zero value is not
// useful; start from DefaultSettings.
type Settings struct {
	// Sidecar (spec.sidecar).
	SidecarImage                    string
	LogLevel                        string
	Resources                       corev1.ResourceRequirements
	InitResources                   corev1.ResourceRequirements
	HealthcheckResources            corev1.ResourceRequirements
	EnablePrivilegedInitContainer   bool
	LocalProxyMode                  string
	HoldApplicationUntilProxyStarts bool
	GracefulExitUntilDownstreamEnds bool
	LocalDNSProxy                   bool
	TLSMinProtocolVersion           string
	TLSMaxProtocolVersion           string
	CipherSuites                    []string
	ECDHCurves                      []string

	// Repo server (spec.repoServer).
	RepoServerIPAddr   string
	RepoServerCodebase string
	RepoServerPort     int

	// Traffic (spec.traffic).
	InterceptionMode              string
	OutboundIPRangeExclusionList  []string
	OutboundIPRangeInclusionList  []string
	OutboundPortExclusionList     []int
	InboundPortExclusionList      []int
	NetworkInterfaceExclusionList []string

	// CertKeyBitSize is the RSA key size of bootstrap certificates
	// (spec.certificate.certKeyBitSize); 0 leaves the key algorithm to the
	// certificate provider.
	CertKeyBitSize int

	// validated is set by Checked: these settings passed Validate, and
	// Mutate need not check them again on every admission.
	validated bool
	// fellBack names the MeshConfig values replaced, as FSM replaces them,
	// by SettingsFromMeshConfig (reported by CachedMeshConfig).
	fellBack []string
	// exclFrom and inclFrom map each entry of the outbound range lists to
	// its index in the MeshConfig's list (nil: the same index), which
	// differs after a comma-joined entry was read as several CIDRs, so a
	// field error names the entry the MeshConfig holds.
	exclFrom, inclFrom []int
}

// DefaultSettings are the values used when the mesh has no MeshConfig; they
// match the MeshConfig CRD and Helm defaults.
func DefaultSettings() Settings {
	return Settings{
		LogLevel:                        DefaultSidecarLogLevel,
		LocalProxyMode:                  LocalProxyModeLocalhost,
		HoldApplicationUntilProxyStarts: true,
		GracefulExitUntilDownstreamEnds: true,
		RepoServerIPAddr:                "127.0.0.1",
		RepoServerPort:                  DefaultRepoServerPort,
		InterceptionMode:                InterceptionPodLevel,
	}
}
