package injector_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestDebugCopyOfPodAnnotatedPod: `kubectl debug <pod> --copy-to=<name>
// --image=busybox` with kubectl's default profile ("general",
// k8s.io/kubectl pkg/cmd/debug/profiles.go) creates a copy without the
// source's labels and annotations and without its probes, keeping its init
// containers, volumes and containers: the sidecar, fsm-init and the bootstrap
// volume of the source's Secret. A pod meshed by its own
// flomesh.io/sidecar-injection annotation, in a namespace that does not
// enable injection itself (`fsm namespace add --disable-sidecar-injection`)
// or disables it, has a copy whose annotations no longer enable injection.
// The copy used to be admitted unchanged: it ran the source's identity (its
// certificate, its repo URL) with no fsm-proxy-uuid label, and lost the
// Secret it mounts when the source was deleted. It must be re-identified as
// any copy is (docs/design.md).
func TestDebugCopyOfPodAnnotatedPod(t *testing.T) {
	ctx := context.Background()
	env := startCoreEnv(t, fsmNamespace)
	h := tresorInjector(ctx, t, env, 2)
	registerInjector(ctx, t, env.Client, h, "injector-debug-copy-test")
	// Waits for the configuration to take effect.
	injectedNamespace(ctx, t, env.Client, "debug-copy-ready")

	for _, tc := range []struct {
		name string
		nsAn map[string]string // the namespace's annotations
	}{
		{name: "namespace silent", nsAn: nil},
		{name: "namespace disabled", nsAn: map[string]string{injector.SidecarInjectionAnnotation: "disabled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "debug-copy-" + strings.ReplaceAll(tc.name, " ", "-")
			if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
				Labels: map[string]string{fsmnames.MonitoredByLabel: meshName}, Annotations: tc.nsAn}}); err != nil {
				t.Fatal(err)
			}
			src := pod("web", ns)
			src.Annotations = map[string]string{injector.SidecarInjectionAnnotation: "enabled"}
			if err := env.Client.Create(ctx, src); err != nil {
				t.Fatal(err)
			}
			srcID := src.Labels[injector.ProxyUUIDLabel]
			if srcID == "" {
				t.Fatal("the source pod was not injected")
			}

			// The copy as kubectl's general profile makes it.
			cp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-debug", Namespace: ns}, Spec: *src.Spec.DeepCopy()}
			cp.Spec.NodeName = ""
			for i := range cp.Spec.Containers {
				c := &cp.Spec.Containers[i]
				c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = nil, nil, nil
			}
			cp.Spec.ShareProcessNamespace = ptr.To(true)
			cp.Spec.Containers = append(cp.Spec.Containers, corev1.Container{Name: "debugger-x7k2p", Image: "busybox",
				Stdin: true, TTY: true, TerminationMessagePolicy: corev1.TerminationMessageReadFile})
			if err := env.Client.Create(ctx, cp); err != nil {
				t.Fatalf("kubectl debug --copy-to: %v", err)
			}

			id := cp.Labels[injector.ProxyUUIDLabel]
			mounted := ""
			for _, v := range cp.Spec.Volumes {
				if v.Name == injector.BootstrapVolumeName && v.Secret != nil {
					mounted = v.Secret.SecretName
				}
			}
			if id == "" || id == srcID || mounted != injector.BootstrapSecretName(id) {
				t.Fatalf("the copy carries %s=%q and mounts Secret %q; the source is %s: want an identity of its own, not the source's",
					injector.ProxyUUIDLabel, id, mounted, srcID)
			}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: mounted}, &corev1.Secret{}); err != nil {
				t.Errorf("the copy's bootstrap Secret: %v", err)
			}
			for _, c := range cp.Spec.Containers {
				if c.Name == injector.SidecarContainerName && !strings.Contains(strings.Join(c.Args, " "), "/"+id+".sidecar.") {
					t.Errorf("the copy's sidecar args %q do not name its uuid %s", c.Args, id)
				}
			}
		})
	}
}
