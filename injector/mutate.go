package injector

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector/iptables"
	"github.com/flomesh-io/fsm-webhooks/internal/warning"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// Mesh is the per-process identity of the mesh the injector serves.
type Mesh struct {
	Name          string
	FSMNamespace  string
	TrustDomain   string
	ClusterDomain string
	// Default images (flags / env FSM_DEFAULT_*_IMAGE).
	SidecarImage     string
	InitImage        string
	HealthcheckImage string
	// ContainerPullPolicy of fsm-init and fsm-healthcheck; empty leaves it
	// to the apiserver.
	ContainerPullPolicy corev1.PullPolicy
	// BootstrapKeyAlgorithm chooses bootstrap keys (BootstrapKeyAlgorithm
	// the function); empty means DefaultBootstrapKeyAlgorithm.
	BootstrapKeyAlgorithm certs.KeyAlgorithm
	// KubeVersion is the apiserver's version (gitVersion), "" when
	// unknown: native mode is refused before 1.29 (nativeSidecarsProblem).
	KubeVersion string
}

// DefaultBootstrapKeyAlgorithm is the bootstrap key unless the operator asks
// otherwise. ECDSA P-256 whatever the CA's algorithm and certKeyBitSize:
// nothing reads the bootstrap key (the sidecar fetches its repo over plain
// HTTP and gets its mesh mTLS certificate from FSM's controller; see
// docs/design.md), and an RSA-2048 key costs ~50 ms of a core where P-256
// costs ~0.05 ms.
const DefaultBootstrapKeyAlgorithm = certs.ECDSAP256

// BootstrapKeyFromMeshConfig restores FSM v1.5.1's choice: RSA of MeshConfig
// spec.certificate.certKeyBitSize bits when set, else the provider's
// default (the CA's algorithm).
const BootstrapKeyFromMeshConfig certs.KeyAlgorithm = "MeshConfig"

// BootstrapKeyAlgorithm is the key algorithm of a bootstrap certificate for
// the operator's choice (empty: DefaultBootstrapKeyAlgorithm;
// BootstrapKeyFromMeshConfig; or a named algorithm) and MeshConfig's
// certKeyBitSize (0: unset). An empty result means the provider's default.
// certKeyBitSize is checked whatever the choice, so a bad MeshConfig is
// refused the same way under every choice.
func BootstrapKeyAlgorithm(choice certs.KeyAlgorithm, certKeyBitSize int) (certs.KeyAlgorithm, error) {
	var fromMeshConfig certs.KeyAlgorithm
	if certKeyBitSize != 0 {
		var err error
		if fromMeshConfig, err = certs.RSAKeyAlgorithm(certKeyBitSize); err != nil {
			return "", fmt.Errorf("MeshConfig spec.certificate.certKeyBitSize: %w", err)
		}
	}
	switch choice {
	case "":
		return DefaultBootstrapKeyAlgorithm, nil
	case BootstrapKeyFromMeshConfig:
		return fromMeshConfig, nil
	}
	if err := choice.Validate(); err != nil {
		return "", fmt.Errorf("bootstrap key algorithm: %w", err)
	}
	return choice, nil
}

// MutateInput is everything Mutate looks at.
type MutateInput struct {
	Pod       *corev1.Pod // not modified
	Namespace *corev1.Namespace
	Settings  Settings
	Mesh      Mesh
	ProxyUUID string
	// ControllerService is FSM's controller Service (ControllerServiceName
	// in the fsm namespace), nil when it does not exist. Only read when
	// Settings.LocalDNSProxy is on: its ClusterIP is the pod's DNS server.
	ControllerService *corev1.Service
	// Reinject handles a copy of an injected pod: containers stay, identity
	// (uuid, Secret, repo URL) is replaced.
	Reinject bool
	// Limits are the namespace's LimitRanges and ResourceQuotas, which the
	// added containers must satisfy (checkNamespaceLimits); empty when it
	// has none or they are not known.
	Limits NamespaceLimits
}

// Mutation is the mutated pod and what its bootstrap Secret must hold.
type Mutation struct {
	Pod *corev1.Pod
	// NeedsSecret is false when only the uuid label is added (NodeLevel
	// interception).
	NeedsSecret bool
	CommonName  string
	Bootstrap   BootstrapConfig
	// KeyAlgorithm of the bootstrap key; empty means the provider's default.
	KeyAlgorithm certs.KeyAlgorithm
	// Warnings are for the user, sent with the admission: what was
	// injected as FSM injected it but is doubtful.
	Warnings []string
}

// BootstrapConfig is the Pipy bootstrap document (bootstrap.yaml, JSON as FSM
// writes it).
type BootstrapConfig struct {
	RepoHost              string
	RepoPort              int
	NodeID                string
	TLSMinProtocolVersion string                 `json:",omitempty"`
	TLSMaxProtocolVersion string                 `json:",omitempty"`
	CipherSuites          []string               `json:",omitempty"`
	ECDHCurves            []string               `json:",omitempty"`
	OriginalHealthProbes  map[string]HealthProbe `json:",omitempty"`
	// ContainerHealthProbes holds every container's original probes;
	// OriginalHealthProbes (FSM's single-container view) keeps the first
	// container's probe of each kind, the one FSM's controller configures
	// the proxy's health port from. FSM v1.5.1 keeps the last container's
	// (RewriteHealthProbes overwrites per container); nothing in FSM reads
	// it but its kubectl-debug copy, which copies it as it is.
	ContainerHealthProbes map[string]map[string]HealthProbe `json:",omitempty"`
}

// CNPrefix is the sidecar certificate's CN without the trust domain:
// <uuid>.sidecar.<serviceaccount>.<namespace>. FSM's controller publishes
// each sidecar's configuration under /repo/fsm-sidecar/<CN prefix>/.
func CNPrefix(proxyUUID, serviceAccount, namespace string) string {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return fmt.Sprintf("%s.sidecar.%s.%s", proxyUUID, serviceAccount, namespace)
}

// CommonName is the sidecar certificate's subject CN.
//
// Callers that sign it check the ServiceAccount with checkServiceAccountForCN
// first: a dotted one makes a CN FSM's control plane reads as another identity.
func CommonName(proxyUUID, serviceAccount, namespace, trustDomain string) string {
	return CNPrefix(proxyUUID, serviceAccount, namespace) + "." + trustDomain
}

// checkServiceAccountForCN refuses a ServiceAccount name with a dot (a DNS
// subdomain may hold one; a namespace, a DNS label, never does). FSM v1.5.1's
// control plane derives a sidecar's identity <serviceaccount>.<namespace> from
// the pod, the middle of the CN <uuid>.sidecar.<serviceaccount>.<namespace>.<trust
// domain> and of the repo path, and splits it on "." taking the first two labels
// as ServiceAccount and namespace (identity.ToK8sServiceAccount): with
// "bookstore.bookbuyer" in namespace x it reads ServiceAccount bookstore of
// namespace bookbuyer, computes that identity's outbound and egress policy, and
// finds it differs from the pod's ("not allowed to join the mesh"). FSM's
// injector signs such a CN; we never do (docs/design.md).
func checkServiceAccountForCN(serviceAccount, namespace string) error {
	if !strings.Contains(serviceAccount, ".") {
		return nil
	}
	read := strings.SplitN(serviceAccount+"."+namespace, ".", 3)
	return fmt.Errorf("spec.serviceAccountName %q: a ServiceAccount name with a dot cannot be meshed: FSM's control plane splits the sidecar identity <serviceaccount>.<namespace> "+
		"(certificate CN <uuid>.sidecar.<serviceaccount>.<namespace>.<trust domain>) on \".\" and would read ServiceAccount %q in namespace %q; "+
		"use a ServiceAccount whose name has no dot, or opt the pod out with annotation %s: disabled",
		serviceAccount, read[0], read[1], SidecarInjectionAnnotation)
}

// checkPodOS refuses a pod that can only run on Windows nodes (windowsOnly).
// fsm-init and the sidecar are Linux containers (iptables, Pipy). With
// spec.os.name windows they carry Linux security settings (runAsUser,
// capabilities, allowPrivilegeEscalation) that the apiserver's validation,
// which runs after this webhook, forbids in a Windows pod: the create failed
// naming fsm-init, a container the user never wrote, after the pod's Secret
// was written (FSM v1.5.1 injects it the same way). Sent to Windows nodes
// by its nodeSelector or node affinity alone, the pod was stored and then
// failed on the node, whose runtime cannot run a Linux image.
func checkPodOS(pod *corev1.Pod) error {
	field, value := windowsOnly(pod)
	switch field {
	case "":
		return nil
	case "spec.os.name":
		return fmt.Errorf("spec.os.name %q: a Windows pod cannot be meshed: the sidecar (Pipy) and %s (iptables) are Linux containers, whose security settings "+
			"(runAsUser, capabilities) the apiserver refuses in a Windows pod; opt the pod out with annotation %s: disabled",
			value, InitContainerName, SidecarInjectionAnnotation)
	}
	return fmt.Errorf("%s %q: a pod for Windows nodes only cannot be meshed: the sidecar (Pipy) and %s (iptables) are Linux containers, "+
		"which a Windows node cannot run; opt the pod out with annotation %s: disabled",
		field, value, InitContainerName, SidecarInjectionAnnotation)
}

// podSecurityEnforceLabel is Pod Security Admission's enforce level label.
const podSecurityEnforceLabel = "pod-security.kubernetes.io/enforce"

// checkPodSecurity refuses a pod whose namespace has Pod Security Admission
// enforce any level but privileged: baseline and restricted (every version)
// forbid fsm-init's added NET_ADMIN, restricted also its root user, and a
// value that is no level is enforced as restricted. The PodSecurity admission
// plugin runs after the mutating webhooks, so the create failed naming
// fsm-init, a container the user never wrote, after the pod's Secret was
// written and its certificate issued, again at each retry of its ReplicaSet
// (FSM v1.5.1 injects it the same way). Without the label the cluster's
// default level applies, which the webhook cannot read; nor can it read the
// configuration's exemptions: a pod naming a RuntimeClass, which may be
// exempt, is left to the apiserver. A namespace exempt by name ignores its
// labels (the apiserver warns when they are set): the message says so.
func checkPodSecurity(ns *corev1.Namespace, pod *corev1.Pod) error {
	level, ok := ns.Labels[podSecurityEnforceLabel]
	if !ok || level == "privileged" || ptr.Deref(pod.Spec.RuntimeClassName, "") != "" {
		return nil
	}
	value := strconv.Quote(level)
	if level != "baseline" && level != "restricted" {
		value += " (not a level, enforced as restricted)"
	}
	return fmt.Errorf("namespace label %s %s: Pod Security Admission refuses the injected pod: %s adds capability NET_ADMIN and runs as root to install the pod's iptables rules, "+
		"which only the privileged level allows; label the namespace %s=privileged "+
		"(or, if the apiserver's PodSecurity configuration exempts it, remove the label, which has no effect there), "+
		"or opt the pod out with annotation %s: disabled",
		podSecurityEnforceLabel, value, InitContainerName, podSecurityEnforceLabel, SidecarInjectionAnnotation)
}

// windowsOnly names the field, and its value, by which the pod can only run
// on Windows nodes: spec.os.name windows; spec.nodeSelector
// kubernetes.io/os windows; or required node affinity each of whose terms
// (they are ORed) requires kubernetes.io/os In [windows] (the first term's
// expression is named). "" when a Linux node may run it. Only these
// unambiguous forms: NotIn [linux] also admits nodes without the label.
func windowsOnly(pod *corev1.Pod) (field, value string) {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return "spec.os.name", string(pod.Spec.OS.Name)
	}
	if v, ok := pod.Spec.NodeSelector[corev1.LabelOSStable]; ok && v == string(corev1.Windows) {
		return fmt.Sprintf("spec.nodeSelector[%q]", corev1.LabelOSStable), v
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return "", ""
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	first := -1
	for i, term := range terms {
		j := slices.IndexFunc(term.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
			return r.Key == corev1.LabelOSStable && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) > 0 &&
				!slices.ContainsFunc(r.Values, func(v string) bool { return v != string(corev1.Windows) })
		})
		if j < 0 {
			return "", ""
		}
		if i == 0 {
			first = j
		}
	}
	if first < 0 {
		return "", ""
	}
	r := terms[0].MatchExpressions[first]
	return fmt.Sprintf("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[%d]", first),
		fmt.Sprintf("%s %s %v", r.Key, r.Operator, r.Values)
}

// BootstrapSecretName is the name of the pod's bootstrap Secret.
func BootstrapSecretName(proxyUUID string) string { return fsmnames.BootstrapSecretName(proxyUUID) }

// podOptions are the annotation-driven choices, validated up front.
type podOptions struct {
	image     string
	repoURL   string
	dnsServer string // the controller Service's ClusterIP; empty without localDNSProxy
	hold      bool
	graceful  bool
	native    bool
	metrics   bool
	resources corev1.ResourceRequirements
	traffic   iptables.Config
}

// Mutate validates the pod's and namespace's annotations against the settings
// and returns the injected pod. It never modifies in.Pod. Every error is for
// the user and names the offending annotation or setting.
func Mutate(in MutateInput) (*Mutation, error) {
	pod := in.Pod.DeepCopy()
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[ProxyUUIDLabel] = in.ProxyUUID
	if in.Settings.InterceptionMode == InterceptionNodeLevel {
		return &Mutation{Pod: pod}, nil
	}
	if !in.Settings.validated {
		if err := in.Settings.Validate(); err != nil {
			return nil, err
		}
	}

	if err := checkPodOS(pod); err != nil {
		return nil, err
	}
	// Not on reinjection: the writer's repair of a stored pod, which Pod
	// Security Admission has admitted, must still rebuild its Secret.
	if !in.Reinject {
		if err := checkPodSecurity(in.Namespace, pod); err != nil {
			return nil, err
		}
	}
	sa := pod.Spec.ServiceAccountName
	if err := checkServiceAccountForCN(sa, in.Namespace.Name); err != nil {
		return nil, err
	}
	cn := CommonName(in.ProxyUUID, sa, in.Namespace.Name, in.Mesh.TrustDomain)
	opts, err := readOptions(in, CNPrefix(in.ProxyUUID, sa, in.Namespace.Name))
	if err != nil {
		return nil, err
	}
	keyAlg, err := BootstrapKeyAlgorithm(in.Mesh.BootstrapKeyAlgorithm, in.Settings.CertKeyBitSize)
	if err != nil {
		return nil, err
	}
	boot := BootstrapConfig{
		RepoHost:              fmt.Sprintf("%s.%s.svc.%s", ControllerServiceName, in.Mesh.FSMNamespace, in.Mesh.ClusterDomain),
		RepoPort:              in.Settings.RepoServerPort,
		NodeID:                cn,
		TLSMinProtocolVersion: in.Settings.TLSMinProtocolVersion,
		TLSMaxProtocolVersion: in.Settings.TLSMaxProtocolVersion,
		CipherSuites:          in.Settings.CipherSuites,
		ECDHCurves:            in.Settings.ECDHCurves,
	}

	setBootstrapVolume(pod, in.ProxyUUID)

	if in.Reinject {
		if !reidentifySidecar(pod, opts.repoURL) {
			return nil, errors.New("pod carries volume " + BootstrapVolumeName + " but no " + SidecarContainerName + " container: remove the volume to have the pod injected")
		}
		probed := probedContainers(pod)
		setProbeBootstrap(&boot, recoverOriginalProbes(probed), probed)
		// A copy (kubectl debug --copy-to drops annotations) is scraped
		// like its source: FSM adds these before its injected check.
		setMetricsAnnotations(pod, opts.metrics)
		return &Mutation{Pod: pod, NeedsSecret: true, CommonName: cn, Bootstrap: boot, KeyAlgorithm: keyAlg}, nil
	}

	probed := probedContainers(pod)
	probes, err := rewriteProbes(probed)
	if err != nil {
		return nil, err
	}
	setProbeBootstrap(&boot, probes.original, probed)
	if probes.needHealthcheck && in.Mesh.HealthcheckImage == "" {
		return nil, errors.New("the pod has TCP or HTTPS probes, which need the fsm-healthcheck container, and its image is not set: set flag --healthcheck-container-image or env FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE (no MeshConfig field holds it)")
	}
	added := []string{SidecarContainerName, InitContainerName}
	if probes.needHealthcheck {
		added = append(added, HealthcheckContainerName)
	}
	if err := containerNamesFree(in.Pod, added); err != nil {
		return nil, err
	}

	sidecar := sidecarContainer(in, pod, opts, probes.httpKinds)
	init := initContainer(in, opts)
	if opts.native {
		sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		// fsm-init must set up redirection before the proxy starts; the
		// app's init containers then already run behind the proxy.
		pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, init, sidecar)
		if probes.needHealthcheck {
			// A native sidecar too: as an app container it would keep a
			// Job's pod from ever completing, which is what native mode is
			// for. It starts before the app containers, whose probes it
			// answers.
			hc := healthcheckContainer(in)
			hc.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
			pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 2, hc)
		}
	} else {
		probes.warnings = append(probes.warnings, appNativeSidecarWarnings(pod.Spec.InitContainers)...)
		if w := neverCompletesWarning(pod.Spec.RestartPolicy); w != "" {
			probes.warnings = append(probes.warnings, w)
		}
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, init)
		// FSM's order: fsm-healthcheck appended first, then the sidecar
		// put first (hold) or last: [sidecar, app..., fsm-healthcheck] or
		// [app..., fsm-healthcheck, sidecar].
		if probes.needHealthcheck {
			pod.Spec.Containers = append(pod.Spec.Containers, healthcheckContainer(in))
		}
		if opts.hold {
			pod.Spec.Containers = slices.Insert(pod.Spec.Containers, 0, sidecar)
		} else {
			pod.Spec.Containers = append(pod.Spec.Containers, sidecar)
		}
	}
	// What the app's containers share with the injected ones (collisions.go):
	// injected as FSM injects it, with a warning.
	apps := appContainersBesideProxy(in.Pod, opts.native)
	probes.warnings = append(probes.warnings, proxyUIDWarnings(in.Pod, apps)...)
	probes.warnings = append(probes.warnings, portWarnings(apps, injectedPorts(in.Settings.RepoServerPort, probes.httpKinds, probes.needHealthcheck, opts.dnsServer != ""))...)
	for _, w := range []string{metricsAnnotationsWarning(in.Pod.Annotations, opts.metrics), localDNSWarning(in.Pod, opts.dnsServer != "")} {
		if w != "" {
			probes.warnings = append(probes.warnings, w)
		}
	}
	if err := checkPodLevelResources(in.Pod, pod, in.Pod.Annotations, in.Namespace.Annotations); err != nil {
		return nil, err
	}
	if err := checkNamespaceLimits(in.Limits, in.Namespace.Name, pod, added); err != nil {
		return nil, err
	}
	setMetricsAnnotations(pod, opts.metrics)
	if opts.dnsServer != "" {
		setLocalDNS(pod, opts.dnsServer, in.Mesh, in.Namespace.Name)
	}
	return &Mutation{Pod: pod, NeedsSecret: true, CommonName: cn, Bootstrap: boot, KeyAlgorithm: keyAlg, Warnings: probes.warnings}, nil
}

// appNativeSidecarWarnings warns of each of the app's native sidecars (init
// containers with restartPolicy Always) when fsm-init is appended after
// them, as FSM v1.5.1 appends it so that the app's init containers reach the
// network before any rule exists. A native sidecar, unlike those, keeps
// running: the kubelet starts it before fsm-init and stops it after the app
// containers, the proxy among them, so its traffic escapes the mesh at
// first and is redirected to a port nobody listens on until the proxy starts
// and after it stops (a log shipper's last flush is lost). Native mode puts
// the proxy before it; not forced here, as it also puts the app's other init
// containers behind the proxy.
func appNativeSidecarWarnings(inits []corev1.Container) []string {
	var names []string
	for i := range inits {
		c := &inits[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			names = append(names, fmt.Sprintf("%q", c.Name))
		}
	}
	if len(names) == 0 {
		return nil
	}
	return []string{fitWarning(fmt.Sprintf("%s (spec.initContainers, restartPolicy Always) started before %s, outside the mesh; annotate %s: \"true\"",
		nativeSidecarsNamed(names), InitContainerName, SidecarNativeAnnotation), warnNativeSidecars)}
}

func nativeSidecarsNamed(quoted []string) string {
	if len(quoted) == 1 {
		return "native sidecar " + quoted[0]
	}
	return "native sidecars " + warning.List(quoted, 80)
}

// neverCompletesWarning warns of a pod meant to end (restartPolicy Never
// or OnFailure: a Job's, a CronJob's, a one-off) injected with the proxy as
// a regular container: the proxy does not exit when the app's containers
// do, so the pod never completes and its Job never succeeds, as under FSM.
// Native mode (Kubernetes 1.29 or later) is the way out: the proxy then
// stops once they have exited. The warning reaches the Job too (warnOwner).
func neverCompletesWarning(policy corev1.RestartPolicy) string {
	if policy != corev1.RestartPolicyNever && policy != corev1.RestartPolicyOnFailure {
		return ""
	}
	return fitWarning(fmt.Sprintf("spec.restartPolicy %s: the %s container keeps running, so the pod never completes; annotate %s: \"true\"",
		policy, SidecarContainerName, SidecarNativeAnnotation), warnNeverCompletes)
}

// readOptions validates every annotation and setting the mutation needs, so
// that nothing is created for a pod that will be denied.
func readOptions(in MutateInput, cnPrefix string) (podOptions, error) {
	podAnn, nsAnn := in.Pod.Annotations, in.Namespace.Annotations
	var o podOptions
	var err error
	o.image = stringOverride(SidecarImageAnnotation, podAnn, nsAnn)
	// Checked as the MeshConfig's sidecarImage is: the apiserver admits a
	// malformed reference and the pod would sit in InvalidImageName with a
	// Secret written for it.
	if o.image != "" {
		if errs := rules.Image(nil, o.image); len(errs) > 0 {
			where := ""
			if strings.TrimSpace(podAnn[SidecarImageAnnotation]) == "" {
				where = " (on the namespace)"
			}
			return o, fmt.Errorf("invalid image %q specified for annotation %q%s: %s", o.image, SidecarImageAnnotation, where, errs[0].Detail)
		}
	}
	if o.image == "" {
		o.image = in.Settings.SidecarImage
	}
	if o.image == "" {
		o.image = in.Mesh.SidecarImage
	}
	if o.image == "" {
		return o, errors.New("sidecar image not set: set MeshConfig spec.sidecar.sidecarImage, flag --sidecar-image or env FSM_DEFAULT_SIDECAR_IMAGE (or annotation " + SidecarImageAnnotation + ")")
	}
	if in.Mesh.InitImage == "" {
		return o, errors.New("fsm-init container image not set: set flag --init-container-image or env FSM_DEFAULT_INIT_CONTAINER_IMAGE (no MeshConfig v1alpha3 field holds it)")
	}
	if o.repoURL, err = repoURL(in.Settings, in.Mesh, cnPrefix); err != nil {
		return o, err
	}
	// A copy of an injected pod keeps the DNS settings it was copied with.
	if in.Settings.LocalDNSProxy && !in.Reinject {
		if o.dnsServer, err = LocalDNSServer(in.ControllerService, in.Mesh.FSMNamespace); err != nil {
			return o, err
		}
	}
	if o.hold, err = boolOverride(HoldApplicationAnnotation, podAnn, nsAnn, in.Settings.HoldApplicationUntilProxyStarts); err != nil {
		return o, err
	}
	if o.graceful, err = boolOverride(GracefulExitAnnotation, podAnn, nsAnn, in.Settings.GracefulExitUntilDownstreamEnds); err != nil {
		return o, err
	}
	if o.native, err = boolOverride(SidecarNativeAnnotation, podAnn, nsAnn, false); err != nil {
		return o, err
	}
	// Not on reinjection: a stored pod's containers are kept as they are.
	if o.native && !in.Reinject {
		where := onNamespace
		if _, onPod := podAnn[SidecarNativeAnnotation]; onPod {
			where = ""
		}
		if err := nativeSidecarsProblem(in.Mesh.KubeVersion, where); err != nil {
			return o, err
		}
	}
	if o.metrics, err = metricsEnabled(nsAnn); err != nil {
		return o, err
	}
	if o.resources, err = sidecarResources(in.Settings.Resources, podAnn, nsAnn); err != nil {
		return o, err
	}
	if o.traffic, err = trafficConfig(in.Settings, podAnn); err != nil {
		return o, err
	}
	return o, nil
}

// sidecarResources is the MeshConfig's sidecar resources with the resource
// annotations applied (pod beats namespace), held to the rules the MeshConfig
// is held to (rules.Resources): the apiserver would otherwise refuse the pod
// after its Secret is written, naming a container the user did not write.
func sidecarResources(base corev1.ResourceRequirements, podAnn, nsAnn map[string]string) (corev1.ResourceRequirements, error) {
	res := *base.DeepCopy()
	p := field.NewPath("sidecar", "resources")
	// The annotation behind each entry it set, by resource name.
	limitsFrom, requestsFrom := map[string]resourceAnnotation{}, map[string]resourceAnnotation{}
	for _, kind := range []struct {
		prefix string
		list   *corev1.ResourceList
		from   map[string]resourceAnnotation
	}{{SidecarResourceLimitsPrefix, &res.Limits, limitsFrom}, {SidecarResourceRequestsPrefix, &res.Requests, requestsFrom}} {
		for _, name := range sidecarResourceNames {
			key := kind.prefix + name
			a := resourceAnnotation{key: key}
			var ok bool
			if a.value, ok = podAnn[key]; !ok {
				a.value, ok = nsAnn[key]
				a.onNamespace = true
			}
			if !ok {
				continue
			}
			q, err := parseQuantityAnnotation(key, a.value, a.where())
			if err != nil {
				return res, err
			}
			// Alone first, so a resource name or quantity no container may
			// have is reported against its own annotation.
			one := corev1.ResourceList{corev1.ResourceName(name): q}
			alone := corev1.ResourceRequirements{Limits: one}
			if kind.prefix == SidecarResourceRequestsPrefix {
				alone = corev1.ResourceRequirements{Requests: one}
			}
			if errs := rules.Resources(p, alone); len(errs) > 0 {
				return res, a.invalid(errs.ToAggregate().Error())
			}
			if *kind.list == nil {
				*kind.list = corev1.ResourceList{}
			}
			(*kind.list)[corev1.ResourceName(name)] = q
			kind.from[name] = a
		}
	}
	// What is left is a request above its limit, where either may come from
	// an annotation (the MeshConfig's own resources passed Validate).
	for _, name := range sidecarResourceNames {
		errs := rules.Resources(p, corev1.ResourceRequirements{
			Limits:   onlyResource(res.Limits, name),
			Requests: onlyResource(res.Requests, name),
		})
		la, limitSet := limitsFrom[name]
		ra, requestSet := requestsFrom[name]
		if len(errs) == 0 || (!limitSet && !requestSet) {
			continue // the MeshConfig's own pair is Validate's to judge
		}
		limitFrom := fmt.Sprintf("MeshConfig spec.sidecar.resources.limits[%s]", name)
		if limitSet {
			limitFrom = la.String()
		}
		if requestSet {
			return res, ra.invalid(fmt.Sprintf("%s (the limit: %s)", errs.ToAggregate().Error(), limitFrom))
		}
		req := res.Requests[corev1.ResourceName(name)]
		return res, la.invalid(fmt.Sprintf("%s: must be greater than or equal to the %s request (%s, MeshConfig spec.sidecar.resources.requests[%s])",
			p.Child("limits").Key(name), name, req.String(), name))
	}
	return res, nil
}

// onlyResource is list's entry for name alone; nil without one.
func onlyResource(list corev1.ResourceList, name string) corev1.ResourceList {
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return nil
	}
	return corev1.ResourceList{corev1.ResourceName(name): q}
}

// resourceAnnotation is a sidecar resource annotation in effect.
type resourceAnnotation struct {
	key, value  string
	onNamespace bool
}

func (a resourceAnnotation) String() string {
	return fmt.Sprintf("annotation %q: %q%s", a.key, a.value, a.where())
}

func (a resourceAnnotation) where() string {
	if a.onNamespace {
		return " (on the namespace)"
	}
	return ""
}

// invalid is the denial of the annotation's value for reason (what the
// apiserver would have said of the sidecar container).
func (a resourceAnnotation) invalid(reason string) error {
	return fmt.Errorf("invalid value %q specified for annotation %q%s: %s", a.value, a.key, a.where(), reason)
}

// containerNamesFree refuses a pod that already has a container (or init
// container) named like one the injector adds: the apiserver would refuse the
// injected pod for a duplicate name the user never wrote, after its Secret is
// written. A copy of an injected pod never gets here (Reinject keeps its
// containers).
func containerNamesFree(pod *corev1.Pod, names []string) error {
	for _, list := range []struct {
		path       *field.Path
		containers []corev1.Container
	}{{field.NewPath("spec", "initContainers"), pod.Spec.InitContainers}, {field.NewPath("spec", "containers"), pod.Spec.Containers}} {
		for i, c := range list.containers {
			if slices.Contains(names, c.Name) {
				return fmt.Errorf("%s: %q is the injector's; rename it or opt the pod out with annotation %s: disabled",
					list.path.Index(i).Child("name"), c.Name, SidecarInjectionAnnotation)
			}
		}
	}
	return nil
}

// trafficConfig merges the pod's exclusion/inclusion annotations with the
// MeshConfig lists.
func trafficConfig(s Settings, podAnn map[string]string) (iptables.Config, error) {
	var c iptables.Config
	ports := func(key string, mesh []int) ([]int, error) {
		var own []int
		if v, ok := podAnn[key]; ok {
			var err error
			if own, err = iptables.ParsePorts(key, v); err != nil {
				return nil, err
			}
		}
		return iptables.Merge(mesh, own), nil
	}
	cidrs := func(key string, parse func(key, value string) ([]string, error), mesh []string) ([]string, error) {
		var own []string
		if v, ok := podAnn[key]; ok {
			var err error
			if own, err = parse(key, v); err != nil {
				return nil, err
			}
		}
		return iptables.Merge(mesh, own), nil
	}
	var err error
	if c.OutboundPortExclusions, err = ports(OutboundPortExclusionAnnotation, s.OutboundPortExclusionList); err != nil {
		return c, err
	}
	if c.InboundPortExclusions, err = ports(InboundPortExclusionAnnotation, s.InboundPortExclusionList); err != nil {
		return c, err
	}
	if c.OutboundIPRangeExclusions, err = cidrs(OutboundIPRangeExclusionAnnotation, iptables.ParseExclusionCIDRs, s.OutboundIPRangeExclusionList); err != nil {
		return c, err
	}
	if c.OutboundIPRangeInclusions, err = cidrs(OutboundIPRangeInclusionAnnotation, iptables.ParseInclusionCIDRs, s.OutboundIPRangeInclusionList); err != nil {
		return c, err
	}
	c.NetworkInterfaceExclusions = iptables.Merge(nil, s.NetworkInterfaceExclusionList)
	c.LocalProxyPodIP = s.LocalProxyMode == LocalProxyModePodIP
	return c, nil
}

func setBootstrapVolume(pod *corev1.Pod, proxyUUID string) {
	vol := corev1.Volume{
		Name: BootstrapVolumeName,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: BootstrapSecretName(proxyUUID),
		}},
	}
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == BootstrapVolumeName {
			pod.Spec.Volumes[i] = vol
			return
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, vol)
}

// setProbeBootstrap fills both probe views of the bootstrap config, walking
// containers in order so the FSM view is deterministic.
func setProbeBootstrap(boot *BootstrapConfig, original map[string]map[string]HealthProbe, containers []*corev1.Container) {
	if len(original) == 0 {
		return
	}
	boot.ContainerHealthProbes = original
	boot.OriginalHealthProbes = map[string]HealthProbe{}
	for _, c := range containers {
		kinds := make([]string, 0, len(original[c.Name]))
		for k := range original[c.Name] {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			if _, ok := boot.OriginalHealthProbes[k]; !ok {
				boot.OriginalHealthProbes[k] = original[c.Name][k]
			}
		}
	}
}

// repoURL is the Pipy repo the sidecar loads its configuration from: FSM's
// controller serves it at /repo/[<codebase>/]fsm-sidecar/<CN prefix>/ (the CN
// without the trust domain; any other path leaves the sidecar without
// configuration). spec.repoServer.ipaddr replaces the controller Service's
// name unless it is a loopback address or localhost (FSM's defaults mean
// "the controller"; the sidecar's own loopback has no repo).
func repoURL(s Settings, m Mesh, cnPrefix string) (string, error) {
	host, err := repoHost(s.RepoServerIPAddr)
	if err != nil {
		return "", err
	}
	if host == "" {
		host = ControllerServiceName + "." + m.FSMNamespace
	}
	path := "/repo/fsm-sidecar/"
	if cb := repoCodebase(s.RepoServerCodebase); cb != "" {
		path = "/repo/" + cb + "/fsm-sidecar/"
	}
	return fmt.Sprintf("http://%s:%d%s%s/", host, s.RepoServerPort, path, cnPrefix), nil
}

// repoCodebase is spec.repoServer.codebase as FSM v1.5.1's controller names
// the codebases it publishes (configurator GetRepoServerCodebase): one
// trailing and one leading "/" removed, nothing else. Pipy's repo looks
// codebases up by their exact name, so trimming more ("mesh-a//" read as
// "mesh-a") points the sidecar at a codebase the controller never creates.
func repoCodebase(v string) string {
	return strings.TrimPrefix(strings.TrimSuffix(v, "/"), "/")
}

// repoHost is the URL host for spec.repoServer.ipaddr (an IP address, an
// IPv6 one possibly in brackets, or a host name), or "" for the controller
// Service (empty, 127.*, ::1, localhost).
func repoHost(v string) (string, error) {
	if v == "" || strings.EqualFold(v, "localhost") {
		return "", nil
	}
	if ip, ok := rules.RepoServerIP(v); ok && ip.Zone() == "" {
		switch {
		case ip.IsLoopback():
			return "", nil
		case ip.Is6():
			return "[" + ip.String() + "]", nil
		default:
			return ip.String(), nil
		}
	}
	// Also matches FSM for malformed 127.x values.
	if strings.HasPrefix(v, "127.") {
		return "", nil
	}
	if errs := rules.RepoServerAddr(field.NewPath("spec", "repoServer", "ipaddr"), v); len(errs) > 0 {
		return "", fmt.Errorf("MeshConfig %w", errs.ToAggregate())
	}
	return v, nil
}

// LocalDNSServer is the DNS server of a pod when MeshConfig
// spec.sidecar.localDNSProxy.enable is on: the ClusterIP of FSM's controller
// Service (svc, nil when it does not exist), which answers DNS on port 53.
// Without it the pod would have no working resolver, so the pod is refused
// with what to fix (FSM silently injects without the DNS settings).
func LocalDNSServer(svc *corev1.Service, fsmNamespace string) (string, error) {
	const field = "MeshConfig spec.sidecar.localDNSProxy.enable is true"
	if svc == nil {
		return "", fmt.Errorf("%s, but Service %s/%s does not exist: its ClusterIP is the DNS server of meshed pods; install FSM's controller or disable the local DNS proxy", field, fsmNamespace, ControllerServiceName)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		// clusterIP is immutable: a headless Service must be recreated.
		return "", fmt.Errorf("%s, but Service %s/%s has no ClusterIP (clusterIP %q): its ClusterIP is the DNS server of meshed pods; "+
			"recreate the Service with a ClusterIP (FSM's controller installs it so) or disable the local DNS proxy", field, svc.Namespace, svc.Name, svc.Spec.ClusterIP)
	}
	return ip.String(), nil
}

// reidentifySidecar points the existing sidecar at the new identity's repo
// URL. It reports whether a sidecar container was found.
func reidentifySidecar(pod *corev1.Pod, url string) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name != SidecarContainerName {
				continue
			}
			args := list[i].Args
			replaced := false
			for j := range args {
				if strings.Contains(args[j], "/fsm-sidecar/") {
					args[j], replaced = url, true
				}
			}
			if !replaced {
				list[i].Args = append(args, url)
			}
			return true
		}
	}
	return false
}

func sidecarContainer(in MutateInput, pod *corev1.Pod, o podOptions, httpKinds map[string]bool) corev1.Container {
	s := in.Settings
	// The level Pipy starts with: FSM's chart levels Pipy does not know
	// (trace, warning, critical, off) become the nearest one it does.
	logLevel, _, _ := rules.SidecarLogLevel(nil, s.LogLevel)
	if logLevel == "" {
		logLevel = DefaultSidecarLogLevel
	}
	ports := []corev1.ContainerPort{
		{Name: "proxy-admin", ContainerPort: ProxyAdminPort},
		{Name: "proxy-inbound", ContainerPort: ProxyInboundPort},
		{Name: "proxy-metrics", ContainerPort: ProxyMetricsPort},
	}
	for _, p := range []struct {
		kind, name string
		port       int32
	}{{probeLiveness, "liveness-port", LivenessProbePort}, {probeReadiness, "readiness-port", ReadinessProbePort}, {probeStartup, "startup-port", StartupProbePort}} {
		if httpKinds[p.kind] {
			ports = append(ports, corev1.ContainerPort{Name: p.name, ContainerPort: p.port})
		}
	}
	kind, name := controllerOf(pod)
	c := corev1.Container{
		Name:  SidecarContainerName,
		Image: o.image,
		// FSM's: a :latest sidecar image would otherwise be pulled at
		// every start (the apiserver's default for it is Always).
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args: []string{
			"pipy",
			"--log-level=" + logLevel,
			fmt.Sprintf("--admin-port=%d", s.RepoServerPort),
			o.repoURL,
		},
		Ports: ports,
		Env: []corev1.EnvVar{
			{Name: "MESH_NAME", Value: in.Mesh.Name},
			fieldEnv("POD_UID", "metadata.uid"),
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			{Name: "POD_CONTROLLER_KIND", Value: kind},
			{Name: "POD_CONTROLLER_NAME", Value: name},
		},
		Resources: o.resources,
		VolumeMounts: []corev1.VolumeMount{{
			Name: BootstrapVolumeName, MountPath: BootstrapMountPath, ReadOnly: true,
		}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(ProxyUID),
			AllowPrivilegeEscalation: ptr.To(false),
		},
	}
	if o.hold || o.graceful {
		c.Lifecycle = &corev1.Lifecycle{}
		if o.hold {
			c.Lifecycle.PostStart = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{waitPipyCommand}}}
		}
		if o.graceful {
			c.Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{gracefulKillCommand}}}
		}
	}
	return c
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

// controllerOf names the pod's controlling workload; a ReplicaSet named
// <deployment>-<hash> is reported as its Deployment.
func controllerOf(pod *corev1.Pod) (kind, name string) {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if ref.Kind == "ReplicaSet" {
			if i := strings.LastIndexByte(ref.Name, '-'); i > 0 {
				return "Deployment", ref.Name[:i]
			}
		}
		return ref.Kind, ref.Name
	}
	return "", ""
}

// setMetricsAnnotations adds the scrape annotations of the sidecar's metrics
// when the namespace enables them.
func setMetricsAnnotations(pod *corev1.Pod, enabled bool) {
	if !enabled {
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[prometheusScrapeAnnotation] = "true"
	pod.Annotations[prometheusPortAnnotation] = fmt.Sprint(ProxyMetricsPort)
	pod.Annotations[prometheusPathAnnotation] = MetricsPath
}

func initContainer(in MutateInput, o podOptions) corev1.Container {
	env := []corev1.EnvVar{fieldEnv("POD_IP", "status.podIP")}
	if o.traffic.LocalProxyPodIP {
		// The PodIP DNAT needs the pod's IPv4 address, which status.podIP
		// is not when the pod's first address is IPv6.
		env = append(env, fieldEnv(iptables.PodIPsEnv, "status.podIPs"))
	}
	return corev1.Container{
		Name:            InitContainerName,
		Image:           in.Mesh.InitImage,
		ImagePullPolicy: in.Mesh.ContainerPullPolicy,
		Command:         []string{"/bin/sh"},
		Args:            []string{"-c", iptables.Script(o.traffic)},
		Env:             env,
		Resources:       *in.Settings.InitResources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
			Privileged:   ptr.To(in.Settings.EnablePrivilegedInitContainer),
			RunAsUser:    ptr.To(int64(0)),
			RunAsNonRoot: ptr.To(false),
		},
	}
}

func healthcheckContainer(in MutateInput) corev1.Container {
	return corev1.Container{
		Name:            HealthcheckContainerName,
		Image:           in.Mesh.HealthcheckImage,
		ImagePullPolicy: in.Mesh.ContainerPullPolicy,
		Command:         []string{healthcheckCommand},
		Args:            []string{"--verbosity", "info"},
		Ports:           []corev1.ContainerPort{{Name: "healthcheck", ContainerPort: HealthcheckPort}},
		Resources:       *in.Settings.HealthcheckResources.DeepCopy(),
	}
}

// setLocalDNS makes the controller Service (server) the pod's only DNS
// server, with the search list and ndots of ClusterFirst.
func setLocalDNS(pod *corev1.Pod, server string, m Mesh, namespace string) {
	pod.Spec.HostAliases = append(pod.Spec.HostAliases, corev1.HostAlias{IP: server, Hostnames: []string{ControllerServiceName + "." + m.FSMNamespace}})
	pod.Spec.DNSPolicy = corev1.DNSNone
	// FSM v1.5.1 searches its trust domain, not the cluster's DNS domain,
	// with ndots its label count + 3 (pipy_container.go; FSM's values call
	// it searchesWithTrustDomain): the nameserver is FSM's controller, which
	// stays after a switch, so its pods resolve as they did. The same as
	// the cluster domain's unless the two differ.
	domain := m.TrustDomain
	ndots := strconv.Itoa(len(strings.Split(domain, ".")) + 3)
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{
		Nameservers: []string{server},
		Searches:    []string{namespace + ".svc." + domain, "svc." + domain, domain},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}},
	}
}
