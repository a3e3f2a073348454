package injector

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// injectedResourceSource says where an injected container's resources come
// from, for the messages: the MeshConfig field, or for the sidecar a
// resource annotation that overrides it.
type injectedResourceSource struct {
	container string
	field     string // the MeshConfig field under spec.sidecar
}

var injectedResourceSources = []injectedResourceSource{
	{SidecarContainerName, "resources"},
	{InitContainerName, "initResources"},
	{HealthcheckContainerName, "healthcheckResources"},
}

// checkPodLevelResources refuses an injection that makes a pod with
// pod-level resources (spec.resources, on by default since Kubernetes 1.34)
// invalid where the pod as written was valid: the apiserver requires every
// regular container's limit to be at most the pod's, the containers'
// aggregate requests (and hugepage limits) at most the pod's, and would
// refuse the injected pod naming a pod-level total the user cannot account
// for, after its Secret was written. The rules are the apiserver's
// (validatePodResourceConsistency), on the pods as it validates them: with
// container requests defaulted from limits (SetDefaults_Pod). A pod-level
// cpu or memory request not set, with a limit set, defaults to the
// containers' aggregate request, which the limit must hold: Kubernetes 1.37
// defaults it after the webhooks, from the injected pod; earlier versions
// before them, from the pod as written, so it is set in what this webhook is
// sent and held to the aggregate.
func checkPodLevelResources(before, after *corev1.Pod, podAnn, nsAnn map[string]string) error {
	if after.Spec.Resources == nil {
		return nil
	}
	was := podLevelProblems(before)
	var msgs []string
	for _, p := range podLevelProblems(after) {
		if slices.Contains(was, p) {
			continue // the pod's own: the apiserver says it
		}
		msgs = append(msgs, p.explain(after, podAnn, nsAnn))
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("the pod's pod-level resources (spec.resources) leave no room for the injected containers: %s; "+
		"or opt the pod out with annotation %s: disabled", strings.Join(msgs, "; "), SidecarInjectionAnnotation)
}

// podLevelProblem is one rule of the apiserver's the pod breaks: kind
// "requests" or "limits" (aggregate), "defaulted" (the aggregate request a
// pod-level request not set defaults to, above the pod's limit) or "limit"
// (one regular container's, container set).
type podLevelProblem struct {
	kind      string
	name      corev1.ResourceName
	container string
}

// podLevelProblems are the apiserver's pod-level resource rules pod breaks.
func podLevelProblems(pod *corev1.Pod) []podLevelProblem {
	if pod.Spec.Resources == nil {
		return nil
	}
	pod = withDefaultedRequests(pod)
	var out []podLevelProblem
	podRes := pod.Spec.Resources
	for name, sum := range resourcehelper.AggregateContainerRequests(pod, resourcehelper.PodResourcesOptions{}) {
		if q, ok := podRes.Requests[name]; ok {
			if sum.Cmp(q) > 0 {
				out = append(out, podLevelProblem{kind: "requests", name: name})
			}
			continue
		}
		// Not set: defaulted to this sum (cpu and memory; from 1.37 after
		// the webhooks), which must then be within the pod's limit.
		if l, ok := podRes.Limits[name]; ok && (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && sum.Cmp(l) > 0 {
			out = append(out, podLevelProblem{kind: "defaulted", name: name})
		}
	}
	for name, sum := range resourcehelper.AggregateContainerLimits(pod, resourcehelper.PodResourcesOptions{}) {
		if !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
			continue
		}
		if q, ok := podRes.Limits[name]; ok && sum.Cmp(q) > 0 {
			out = append(out, podLevelProblem{kind: "limits", name: name})
		}
	}
	for _, c := range pod.Spec.Containers {
		for name, l := range c.Resources.Limits {
			if q, ok := podRes.Limits[name]; ok && l.Cmp(q) > 0 {
				out = append(out, podLevelProblem{kind: "limit", name: name, container: c.Name})
			}
		}
	}
	return out
}

// explain says what p is in pod, the injected pod, and what to change.
func (p podLevelProblem) explain(pod *corev1.Pod, podAnn, nsAnn map[string]string) string {
	pod = withDefaultedRequests(pod)
	podRes := pod.Spec.Resources
	switch p.kind {
	case "limit":
		q := podRes.Limits[p.name]
		l := containerResources(pod, p.container).Limits[p.name]
		return fmt.Sprintf("container %s's %s limit %s (%s) is above the pod's limit spec.resources.limits[%s] %s: raise it to at least %s",
			p.container, p.name, l.String(), sourceOf(p.container, "limits", p.name, podAnn, nsAnn), p.name, q.String(), l.String())
	case "requests":
		q := podRes.Requests[p.name]
		sum := resourcehelper.AggregateContainerRequests(pod, resourcehelper.PodResourcesOptions{})[p.name]
		return fmt.Sprintf("spec.resources.requests[%s] %s is below the containers' aggregate request of %s with %s: raise it to at least %s",
			p.name, q.String(), sum.String(), injectedShares(pod, "requests", p.name, podAnn, nsAnn), sum.String())
	case "defaulted":
		q := podRes.Limits[p.name]
		sum := resourcehelper.AggregateContainerRequests(pod, resourcehelper.PodResourcesOptions{})[p.name]
		return fmt.Sprintf("spec.resources.limits[%s] %s is below the containers' aggregate request of %s with %s, "+
			"to which the pod-level request (not set) defaults: raise the limit to at least %s",
			p.name, q.String(), sum.String(), injectedShares(pod, "requests", p.name, podAnn, nsAnn), sum.String())
	default:
		q := podRes.Limits[p.name]
		sum := resourcehelper.AggregateContainerLimits(pod, resourcehelper.PodResourcesOptions{})[p.name]
		return fmt.Sprintf("spec.resources.limits[%s] %s is below the containers' aggregate limit of %s with %s: raise it to at least %s",
			p.name, q.String(), sum.String(), injectedShares(pod, "limits", p.name, podAnn, nsAnn), sum.String())
	}
}

// injectedShares lists what each injected container asks of name.
func injectedShares(pod *corev1.Pod, kind string, name corev1.ResourceName, podAnn, nsAnn map[string]string) string {
	var parts []string
	for _, s := range injectedResourceSources {
		res := containerResources(pod, s.container)
		list := res.Requests
		if kind == "limits" {
			list = res.Limits
		}
		if q, ok := list[name]; ok {
			parts = append(parts, fmt.Sprintf("%s's %s (%s)", s.container, q.String(), sourceOf(s.container, kind, name, podAnn, nsAnn)))
		}
	}
	if len(parts) == 0 {
		return "the injected containers"
	}
	return strings.Join(parts, ", ")
}

// sourceOf names where container's value of kind (requests or limits) of
// name comes from. A sidecar request defaulted from its limit is the
// limit's.
func sourceOf(container, kind string, name corev1.ResourceName, podAnn, nsAnn map[string]string) string {
	i := slices.IndexFunc(injectedResourceSources, func(s injectedResourceSource) bool { return s.container == container })
	if i < 0 {
		return "as written"
	}
	if container == SidecarContainerName {
		prefixes := []string{SidecarResourceLimitsPrefix}
		if kind == "requests" {
			prefixes = []string{SidecarResourceRequestsPrefix, SidecarResourceLimitsPrefix}
		}
		for _, prefix := range prefixes {
			key := prefix + string(name)
			if _, ok := podAnn[key]; ok {
				return fmt.Sprintf("annotation %s", key)
			}
			if _, ok := nsAnn[key]; ok {
				return fmt.Sprintf("annotation %s on the namespace", key)
			}
		}
	}
	return "MeshConfig spec.sidecar." + injectedResourceSources[i].field
}

// containerResources is the resources of the container or init container
// named name.
func containerResources(pod *corev1.Pod, name string) corev1.ResourceRequirements {
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		if i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name }); i >= 0 {
			return cs[i].Resources
		}
	}
	return corev1.ResourceRequirements{}
}

// withDefaultedRequests is pod with every container's missing requests
// defaulted from its limits, as the apiserver defaults a pod (the webhook
// is sent the pod so defaulted; the containers it adds are defaulted after).
func withDefaultedRequests(pod *corev1.Pod) *corev1.Pod {
	pod = pod.DeepCopy()
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range cs {
			r := &cs[i].Resources
			for name, l := range r.Limits {
				if _, ok := r.Requests[name]; !ok {
					if r.Requests == nil {
						r.Requests = corev1.ResourceList{}
					}
					r.Requests[name] = l.DeepCopy()
				}
			}
		}
	}
	return pod
}
