package injector

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DescribeInjection is a short human summary of what the injector did to a
// pod (for the local demo and CLI output): its proxy uuid, bootstrap Secret
// and container lists.
func DescribeInjection(pod *corev1.Pod) string {
	var b strings.Builder
	id := pod.Labels[ProxyUUIDLabel]
	if id == "" {
		fmt.Fprintf(&b, "pod %s/%s: not injected\n", pod.Namespace, pod.Name)
		return b.String()
	}
	fmt.Fprintf(&b, "pod %s/%s: proxy uuid %s, bootstrap Secret %s\n", pod.Namespace, pod.Name, id, BootstrapSecretName(id))
	list := func(kind string, cs []corev1.Container) {
		for _, c := range cs {
			extra := ""
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				extra = " (native sidecar)"
			}
			fmt.Fprintf(&b, "  %-15s %-16s %s%s\n", kind, c.Name, c.Image, extra)
		}
	}
	list("init container", pod.Spec.InitContainers)
	list("container", pod.Spec.Containers)
	return b.String()
}
