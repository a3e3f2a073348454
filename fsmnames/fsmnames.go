// Package fsmnames holds the names Flomesh Service Mesh (FSM) v1.5.1 users
// and FSM's own components already rely on: labels, the MeshConfig group and
// CRD, webhook paths, Services, Secrets and webhook configurations. Every
// package that needs one imports it from here, so a name is spelled once.
//
// It imports nothing of this module, so any package may import it. The API
// types under apis/ are the one exception that keeps its own spelling of the
// group: they import nothing of ours (controller-gen reads their
// +groupName marker, and hack/verify-generated.sh copies them alone), and
// the tests here check that ConfigGroup equals their GroupVersion.Group.
//
// Names only: how a webhook is registered (rules, selectors, timeouts) is
// decided by the package that serves it (injector, validator, converter).
package fsmnames

// Namespace labels FSM's webhooks select on.
const (
	// MonitoredByLabel on a namespace names the mesh that manages it.
	MonitoredByLabel = "flomesh.io/monitored-by"
	// IgnoreLabel on a namespace (any value) keeps the mesh's webhooks away.
	IgnoreLabel = "flomesh.io/ignore"
	// ControlPlaneLabel marks control-plane namespaces FSM's webhooks skip.
	ControlPlaneLabel = "control-plane"
)

// The MeshConfig API.
const (
	// ConfigGroup is the MeshConfig API group.
	ConfigGroup = "config.flomesh.io"
	// MeshConfigResource is the MeshConfig resource (plural).
	MeshConfigResource = "meshconfigs"
	// MeshConfigCRDName is the MeshConfig CustomResourceDefinition.
	MeshConfigCRDName = MeshConfigResource + "." + ConfigGroup
	// MeshConfigName is the mesh's MeshConfig in the fsm namespace.
	MeshConfigName = "fsm-mesh-config"
)

// CABundleSecretName is the default Secret holding the mesh root CA in the
// fsm namespace (FSM's fsm.caBundleSecretName).
const CABundleSecretName = "fsm-ca-bundle"

// Paths the apiserver calls.
const (
	InjectorPath  = "/mutate-pod-creation"
	ValidatorPath = "/validate"
	ConverterPath = "/convert"
)

// Services the apiserver calls in the fsm namespace.
const (
	InjectorService  = "fsm-injector"
	ValidatorService = "fsm-validator"
	// ConverterService is FSM's bootstrap Service, which served conversion.
	ConverterService = "fsm-bootstrap"
)

// Secrets holding each webhook's serving certificate in the fsm namespace.
const (
	InjectorCertSecret  = "mutating-webhook-cert-secret"
	ValidatorCertSecret = "validating-webhook-cert-secret"
	ConverterCertSecret = "crd-converter-cert-secret"
)

// BootstrapSecretPrefix starts the name of each injected pod's bootstrap
// Secret, in the pod's namespace.
const BootstrapSecretPrefix = "sidecar-bootstrap-config-"

// BootstrapSecretName is the bootstrap Secret of the sidecar with proxyUUID.
func BootstrapSecretName(proxyUUID string) string { return BootstrapSecretPrefix + proxyUUID }

// MutatingConfigurationName is the injector's MutatingWebhookConfiguration.
func MutatingConfigurationName(mesh string) string { return "fsm-webhook-" + mesh }

// ValidatingConfigurationName is the validator's
// ValidatingWebhookConfiguration.
func ValidatingConfigurationName(mesh string) string { return "fsm-validator-mesh-" + mesh }

// ConfigurationLabels are the labels FSM puts on its webhook configurations.
// Each call returns a fresh map.
func ConfigurationLabels(mesh string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh}
}
