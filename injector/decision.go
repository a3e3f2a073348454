package injector

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// SkipReason says why a pod or VirtualMachine is admitted unchanged; the
// handler logs it as "reason" (verbosity 1).
type SkipReason string

// Reasons a pod is not injected.
const (
	SkipMirrorPod       SkipReason = "mirror-pod"
	SkipHostNetwork     SkipReason = "host-network"
	SkipSystemNamespace SkipReason = "system-namespace"
	SkipFSMNamespace    SkipReason = "fsm-namespace"
	SkipNotMonitored    SkipReason = "namespace-not-monitored"
	SkipIgnored         SkipReason = "namespace-ignored"
	SkipNotEnabled      SkipReason = "injection-not-enabled"
	SkipDisabled        SkipReason = "injection-disabled"
	SkipAlreadyInjected SkipReason = "already-injected"
)

// Decision is the outcome of Decide.
type Decision struct {
	// Inject is true when the pod gets a sidecar.
	Inject bool
	// Reinject is true for a pod that already carries the bootstrap volume
	// under a different identity (a copy of an injected pod): it keeps its
	// containers and gets a new proxy uuid and bootstrap Secret.
	Reinject bool
	// ExistingUUID is the proxy uuid a reinjected pod already carries when
	// its bootstrap volume mounts that uuid's Secret.
	ExistingUUID string
	// Skip says why a pod is not injected (Inject false, Err nil).
	Skip SkipReason
	// Err is set when the pod must be denied; its message is for the user.
	Err error
}

// DecideInput is what Decide looks at.
type DecideInput struct {
	Pod          *corev1.Pod
	Namespace    *corev1.Namespace
	MeshName     string
	FSMNamespace string
}

// Decide says whether pod gets a sidecar. A mirror pod is checked first, then
// hostNetwork, then the namespace and the annotations (decideAnnotated), then
// whether the pod is a copy or reinvocation of an injected one; a copy that
// already runs the sidecar is re-identified in a namespace the mesh injects
// even when its annotations no longer enable injection (copyOfMeshed).
func Decide(in DecideInput) Decision {
	pod := in.Pod
	// A static pod's mirror, which the kubelet creates as its node: the
	// kubelet runs the manifest, never the API object, so a sidecar there
	// would never run; and the NodeRestriction admission plugin, which the
	// apiserver runs again after a webhook changed the pod, refuses a
	// node's pod that mounts a Secret, leaving the static pod invisible in
	// the API and a bootstrap Secret (and a certificate) behind on each of
	// the kubelet's retries. The annotation alone decides, as for the
	// apiserver's ServiceAccount plugin: a pod that carries it is treated as
	// a mirror by the kubelet, and setting it only opts a pod out. FSM
	// (which skips only hostNetwork) injects mirror pods.
	if _, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		return Decision{Skip: SkipMirrorPod}
	}
	if pod.Spec.HostNetwork {
		return Decision{Skip: SkipHostNetwork}
	}
	dec := decideAnnotated(in.Namespace, pod.Annotations, in.MeshName, in.FSMNamespace)
	if copyOfMeshed(dec, pod) {
		// A copy whose annotations no longer enable injection: kubectl
		// debug --copy-to (its default profile drops the annotations) of
		// a pod meshed by its own annotation. Its sidecar runs whatever
		// they say; admitted as it is, it ran the source's identity and
		// lost the Secret it mounts with the source.
		return Decision{Inject: true, Reinject: true, ExistingUUID: existingUUID(pod)}
	}
	if !dec.Inject {
		return dec
	}
	if hasBootstrapVolume(pod) {
		// Either our own reinvocation (only with a configuration registered
		// with reinvocationPolicy IfNeeded; ours says Never) or a copy
		// of an injected pod (kubectl debug --copy-to). The handler tells them
		// apart by the Secret: one we created in this admission has no owner.
		return Decision{Inject: true, Reinject: true, ExistingUUID: existingUUID(pod)}
	}
	return dec
}

// decideAnnotated is the decision pods and VirtualMachines share (FSM's
// isNamespaceInjectable and isAnnotatedForInjection): the namespace, then
// the object's annotations, which beat the namespace's.
func decideAnnotated(ns *corev1.Namespace, annotations map[string]string, meshName, fsmNamespace string) Decision {
	if skip, _ := namespaceExcluded(ns, meshName, fsmNamespace); skip != "" {
		return Decision{Skip: skip}
	}
	// The pod's value wins; as FSM, both are parsed first, so an invalid
	// namespace value refuses the pod even when the pod's decides.
	enabled := false
	var found bool
	for i, ann := range []map[string]string{annotations, ns.Annotations} {
		v, ok := ann[SidecarInjectionAnnotation]
		if !ok {
			continue
		}
		where := ""
		if i == 1 {
			where = onNamespace
		}
		b, err := parseBoolAnnotation(SidecarInjectionAnnotation, v, where)
		if err != nil {
			return Decision{Err: err}
		}
		if !found {
			enabled, found = b, true
		}
	}
	if !found {
		return Decision{Skip: SkipNotEnabled}
	}
	if !enabled {
		return Decision{Skip: SkipDisabled}
	}
	return Decision{Inject: true}
}

// namespaceExcluded says why the mesh does not inject into ns, and the
// namespace label that decides it (empty for a namespace never injected):
// empty reason when it injects it. The admission (decideAnnotated) and the
// bootstrap Secret writer share it, so the writer never signs a certificate
// for a Secret the chart's write policy refuses.
func namespaceExcluded(ns *corev1.Namespace, meshName, fsmNamespace string) (SkipReason, string) {
	switch ns.Name {
	case "kube-system", "kube-public":
		return SkipSystemNamespace, ""
	case fsmNamespace:
		return SkipFSMNamespace, ""
	}
	// The namespace is the one read from the cache, never the request's
	// claim, and is held to the webhook configuration's namespaceSelector:
	// a caller that is not the apiserver cannot have a Secret written (and a
	// certificate issued) for a namespace this mesh does not inject.
	if ns.Labels[fsmnames.MonitoredByLabel] != meshName {
		return SkipNotMonitored, fsmnames.MonitoredByLabel
	}
	// Either label excludes a monitored namespace, whatever its value, as
	// the configuration's namespaceSelector does (FSM's).
	for _, l := range []string{fsmnames.IgnoreLabel, fsmnames.ControlPlaneLabel} {
		if _, ok := ns.Labels[l]; ok {
			return SkipIgnored, l
		}
	}
	return "", ""
}

// copyOfMeshed tells a pod that already runs a sidecar on a bootstrap
// Secret (a copy of an injected pod) in a namespace the mesh injects, which
// the namespace's annotation (absent, or disabling injection) would leave
// untouched. The sidecar container is required too: a pod that merely has a
// volume of that name, injection off, is the user's; and so is a pod whose
// own annotation disables injection (said on the pod, it is meant).
func copyOfMeshed(dec Decision, pod *corev1.Pod) bool {
	if dec.Inject || (dec.Skip != SkipNotEnabled && dec.Skip != SkipDisabled) || !hasBootstrapVolume(pod) {
		return false
	}
	if _, own := pod.Annotations[SidecarInjectionAnnotation]; own {
		return false
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == SidecarContainerName {
				return true
			}
		}
	}
	return false
}

func hasBootstrapVolume(pod *corev1.Pod) bool {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == BootstrapVolumeName {
			return true
		}
	}
	return false
}

// existingUUID returns the pod's proxy uuid when its bootstrap volume mounts
// that uuid's Secret, else "". A volume of that name that is not a Secret is
// tolerated (it is replaced on reinjection). The label is the pod author's
// to write and may hold dots, the CN's delimiter: a uuid with one is none an
// injector generated, and kept it would make the CN
// <uuid>.sidecar.<sa>.<ns>.<trust domain> (which the writer's repair signs)
// name another identity in its leading labels. Such a pod is a copy.
func existingUUID(pod *corev1.Pod) string {
	id := pod.Labels[ProxyUUIDLabel]
	if id == "" || strings.Contains(id, ".") {
		return ""
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.Name == BootstrapVolumeName && v.Secret != nil && v.Secret.SecretName == BootstrapSecretPrefix+id {
			return id
		}
	}
	return ""
}
