package injector

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ProbePodName is the name of the dry-run pod Probe creates.
const ProbePodName = "fsm-injector-probe"

// Probe checks the whole admission path end to end: it creates a pod in
// namespace (which must be monitored by the mesh with injection enabled) as a
// server-side dry run and reports an error unless the apiserver returns it
// injected. Nothing is persisted and no Secret is created, so it suits a
// readiness check.
func Probe(ctx context.Context, c client.Client, namespace string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ProbePodName, Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		return fmt.Errorf("dry-run create of probe pod in %s: %w", namespace, err)
	}
	if pod.Labels[ProxyUUIDLabel] == "" {
		return fmt.Errorf("probe pod in %s came back without the %s label: the injector webhook is not active", namespace, ProxyUUIDLabel)
	}
	return nil
}
