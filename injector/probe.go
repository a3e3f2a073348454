package injector

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// ProbePodName is the name of the dry-run pod Probe creates.
const ProbePodName = "fsm-injector-probe"

// Probe checks the whole admission path end to end: it creates a pod in
// namespace, which mesh (its Name and FSMNamespace) must monitor, as a
// server-side dry run and reports an error unless the apiserver returns it
// injected. Nothing is persisted and no Secret is created, so it suits a
// readiness check. The pod asks for injection itself: the namespace's
// flomesh.io/sidecar-injection, which decides for the namespace's own pods,
// says nothing about the webhook. Its labels do decide whether the
// apiserver calls the webhook at all (the registration's namespaceSelector),
// so a pod that comes back uninjected is explained by them (probeNotInjected).
func Probe(ctx context.Context, c client.Client, mesh Mesh, namespace string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ProbePodName, Namespace: namespace,
			Annotations: map[string]string{SidecarInjectionAnnotation: "enabled"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		if namespaceNotFound(err, namespace) {
			return fmt.Errorf("dry-run create of probe pod: namespace %s not found: create it labelled %s=%s", namespace, fsmnames.MonitoredByLabel, mesh.Name)
		}
		return fmt.Errorf("dry-run create of probe pod in %s: %w", namespace, err)
	}
	if pod.Labels[ProxyUUIDLabel] != "" {
		return nil
	}
	return probeNotInjected(ctx, c, mesh, namespace)
}

// probeNotInjected says why the probe pod came back without a sidecar. The
// apiserver calls the injector only for a namespace its namespaceSelector
// matches: one that left the mesh (unlabelled, moved to another mesh,
// labelled flomesh.io/ignore) is named with the label to fix, since the
// webhook itself serves every other namespace. Read only on this failure.
func probeNotInjected(ctx context.Context, c client.Reader, mesh Mesh, namespace string) error {
	notCalled := fmt.Errorf("probe pod in %s came back without the %s label: the injector webhook is not active", namespace, ProxyUUIDLabel)
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return fmt.Errorf("%w (reading namespace %s to tell why: %w)", notCalled, namespace, err)
	}
	if skip, label := namespaceExcluded(ns, mesh.Name, mesh.FSMNamespace); skip != "" {
		return fmt.Errorf("probe pod in %s came back without the %s label: the apiserver does not call the injector there: %s",
			namespace, ProxyUUIDLabel, outOfMeshFix(namespace, mesh.Name, skip, label))
	}
	return notCalled
}

// namespaceNotFound: err is the apiserver's NotFound for namespace itself
// (NamespaceLifecycle), not for some other object.
func namespaceNotFound(err error, namespace string) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces" && d.Name == namespace
}
