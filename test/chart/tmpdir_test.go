package chart_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestHookAndServersHaveWritableTmp: the binary links controller-runtime's
// envtest (`fsm-webhooks local`), whose package init creates a cache
// directory under /tmp and panics when it cannot, before any subcommand
// runs. So every container of the image with a read-only root needs an
// emptyDir at /tmp; the uninstall hook Job without one failed 4/4 on a real
// node (test/node TestUninstallOnNode).
func TestHookAndServersHaveWritableTmp(t *testing.T) {
	for provider, values := range providerValues {
		r := mustRender(t, values)
		for _, w := range []struct{ kind, name string }{
			{"Deployment", "fsm-webhooks"},
			{"Job", "fsm-webhooks-uninstall"},
		} {
			t.Run(provider+"/"+w.kind+"/"+w.name, func(t *testing.T) {
				var pod corev1.PodTemplateSpec
				tmpl := nested(t, mustFind(t, r, w.kind, w.name), "spec", "template").(map[string]any)
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
					t.Fatal(err)
				}
				emptyDirs := map[string]bool{}
				for _, v := range pod.Spec.Volumes {
					emptyDirs[v.Name] = v.EmptyDir != nil
				}
				for _, c := range pod.Spec.Containers {
					if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
						continue
					}
					writable := false
					for _, m := range c.VolumeMounts {
						writable = writable || (m.MountPath == "/tmp" && !m.ReadOnly && emptyDirs[m.Name])
					}
					if !writable {
						t.Errorf("container %s: read-only root and no emptyDir mounted at /tmp (mounts %v, volumes %v)", c.Name, c.VolumeMounts, pod.Spec.Volumes)
					}
				}
			})
		}
	}
}
