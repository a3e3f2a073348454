package injector

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// For the external tests: the pod cache's uuid index as client.MatchingFields
// and as the informer's indexer name it.
const (
	PodUUIDIndex     = podUUIDIndex
	PodUUIDIndexName = podUUIDIndexName
)

// WorstWarningsPod is a pod that trips nearly every admission warning the
// injector has (TestWarningsStayWhole, TestE2E): the proxy's uid on every
// container, ports the injected containers listen on, probes without a port
// or with a scheme the apiserver refuses unmeshed, the app's native
// sidecars before fsm-init, restartPolicy Never and its own scrape
// annotations. Set by the pod, so the apiserver's defaulting changes none of
// it. Its namespace needs flomesh.io/metrics enabled.
func WorstWarningsPod(name, ns string) *corev1.Pod {
	httpProbe := func(port int32, scheme corev1.URIScheme) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port), Scheme: scheme}}}
	}
	native := ptr.To(corev1.ContainerRestartPolicyAlways)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{
			"prometheus.io/scrape": "true", "prometheus.io/port": "9102", "prometheus.io/path": "/metrics",
		}},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			DNSPolicy:       corev1.DNSClusterFirst,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To(ProxyUID)},
			InitContainers: []corev1.Container{
				{Name: "log-shipper", Image: "shipper", RestartPolicy: native},
				{Name: "vault-agent", Image: "vault", RestartPolicy: native},
			},
			Containers: []corev1.Container{
				{Name: "app", Image: "app",
					Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: ProxyAdminPort}, {Name: "metrics", ContainerPort: ProxyMetricsPort}},
					LivenessProbe:  httpProbe(0, corev1.URISchemeHTTP),
					ReadinessProbe: httpProbe(8080, "https")},
				{Name: "worker", Image: "worker",
					Ports:         []corev1.ContainerPort{{Name: "grpc", ContainerPort: ProxyInboundPort}},
					LivenessProbe: httpProbe(0, corev1.URISchemeHTTP)},
				{Name: "exporter", Image: "exporter",
					Ports: []corev1.ContainerPort{{Name: "health", ContainerPort: StartupProbePort}, {Name: "pprof", ContainerPort: 6060}}},
			},
		},
	}
}
