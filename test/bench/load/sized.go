package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// The sized webhook phase: the pod + Secret phase's creates through a
// mutating webhook in this process that answers each pod with the JSON
// patch the injector gives it (sidecar, init container, bootstrap volume,
// labels), computed once before the phase by the injector's own Mutate and
// CreatePatch. No certificate is issued and nothing is cached, so its rate is
// the floor for any injector on this apiserver: the webhook call, the
// injected pod's size and a bootstrap-sized Secret, what the meshed phase
// must be compared with to see the injector's own cost.
const (
	// sizedNamespaceLabel marks the sized phase's namespaces, the only ones
	// the sized webhook's namespaceSelector matches.
	sizedNamespaceLabel = "bench.flomesh.io/sized-webhook"
	sizedPath           = "/mutate-sized"
	sizedTag            = "[sized webhook, in the load tool's process: the injector's patch, no certificate]"
	// sizedUUID is every sized pod's proxy uuid: the patch is computed
	// once, and a uuid's length is all that matters to the apiserver.
	sizedUUID = "00000000-0000-4000-8000-000000000000"
)

// clientSecretName is the Secret the client writes before pod (in the
// phases where clientWritesSecret): s-<i> for p-<i>.
func clientSecretName(pod string) string { return "s-" + strings.TrimPrefix(pod, "p-") }

// clientPod is the pod the load tool creates, before any webhook.
func clientPod(key client.ObjectKey) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
}

// sizedAnswer is the sized webhook's answer for each of its namespaces
// (the injector's patch names the namespace in the sidecar's identity).
type sizedAnswer struct {
	byNamespace map[string]sizedPatch
}

// sizedPatch is the injector's patch for a namespace's pods, and where in
// it the bootstrap volume goes: that op's value is rewritten per pod so the
// volume mounts the Secret the client wrote for it.
type sizedPatch struct {
	ops     []jsonpatch.Operation
	volumes int // index in ops of the add of /spec/volumes
	// vols are the pod's volumes as Mutate made them, the bootstrap
	// volume at index bootstrap.
	vols      []corev1.Volume
	bootstrap int
}

// newSizedAnswer runs the injector's Mutate and CreatePatch on the tool's
// pod in each of namespaces, with the settings and mesh the meshed phase's
// injector uses.
func newSizedAnswer(settings injector.Settings, mesh injector.Mesh, namespaces []string) (*sizedAnswer, error) {
	a := &sizedAnswer{byNamespace: map[string]sizedPatch{}}
	for _, name := range namespaces {
		pod := clientPod(client.ObjectKey{Namespace: name, Name: "p-0"})
		mut, err := injector.Mutate(injector.MutateInput{
			Pod: pod, Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: namespaceLabels(name)}},
			Settings: settings, Mesh: mesh, ProxyUUID: sizedUUID,
		})
		if err != nil {
			return nil, fmt.Errorf("sized webhook: the injector's mutation of the pod in %s: %w", name, err)
		}
		ops, err := injector.CreatePatch(pod, mut.Pod)
		if err != nil {
			return nil, fmt.Errorf("sized webhook: the injector's patch for the pod in %s: %w", name, err)
		}
		p := sizedPatch{ops: ops, volumes: -1, vols: mut.Pod.Spec.Volumes, bootstrap: -1}
		for i, op := range ops {
			if op.Operation == "add" && op.Path == "/spec/volumes" {
				p.volumes = i
			}
		}
		for i, v := range p.vols {
			if v.Name == injector.BootstrapVolumeName && v.Secret != nil {
				p.bootstrap = i
			}
		}
		if p.volumes < 0 || p.bootstrap < 0 {
			return nil, fmt.Errorf("sized webhook: the injector's patch for the pod in %s adds no /spec/volumes holding Secret volume %s (ops %v)", name, injector.BootstrapVolumeName, ops)
		}
		a.byNamespace[name] = p
	}
	return a, nil
}

// patchFor is the answer for a pod in namespace whose client wrote Secret
// secret: the injector's patch, its bootstrap volume mounting secret.
func (a *sizedAnswer) patchFor(namespace, secret string) ([]jsonpatch.Operation, error) {
	p, ok := a.byNamespace[namespace]
	if !ok {
		return nil, fmt.Errorf("namespace %q is not one of the sized phase's", namespace)
	}
	vols := append([]corev1.Volume(nil), p.vols...)
	src := *vols[p.bootstrap].Secret
	src.SecretName = secret
	vols[p.bootstrap].Secret = &src
	ops := append([]jsonpatch.Operation(nil), p.ops...)
	ops[p.volumes].Value = vols
	return ops, nil
}

// Handle decodes the pod, as every pod webhook must, and answers the
// injector's patch for it.
func (a *sizedAnswer) Handle(_ context.Context, req admission.Request) admission.Response {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("sized webhook: decoding the pod of %s/%s: %w", req.Namespace, req.Name, err))
	}
	ns, name := cmp.Or(pod.Namespace, req.Namespace), cmp.Or(pod.Name, req.Name)
	ops, err := a.patchFor(ns, clientSecretName(name))
	if err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("sized webhook: pod %s/%s: %w", ns, name, err))
	}
	return admission.Patched("", ops...)
}

// sizedInjected says whether pod came back as the sized webhook answers:
// the injector's sidecar and init container, its bootstrap volume mounting
// the client's Secret.
func sizedInjected(pod *corev1.Pod) error {
	has := func(cs []corev1.Container, name string) bool {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
		return false
	}
	var secret string
	for _, v := range pod.Spec.Volumes {
		if v.Name == injector.BootstrapVolumeName && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if !has(pod.Spec.Containers, injector.SidecarContainerName) || !has(pod.Spec.InitContainers, injector.InitContainerName) || secret != clientSecretName(pod.Name) {
		return fmt.Errorf("pod %s came back without container %s, init container %s or volume %s of Secret %s (bootstrap Secret %q)",
			pod.Name, injector.SidecarContainerName, injector.InitContainerName, injector.BootstrapVolumeName, clientSecretName(pod.Name), secret)
	}
	return nil
}

// sizedStored reports a pod the sized phase created (key) as stored: whether
// it holds what the injector adds, and its size next to the injector's
// warm-up pod's (both without managedFields; they differ by names only).
func sizedStored(ctx context.Context, cl client.Client, key client.ObjectKey) string {
	var pod, warm corev1.Pod
	if err := cl.Get(ctx, key, &pod); err != nil {
		return fmt.Sprintf("stored pod %s: %v", key, err)
	}
	if err := sizedInjected(&pod); err != nil {
		return fmt.Sprintf("stored pod %s NOT injected, the phase's figure is not the floor: %v", key, err)
	}
	size := func(p *corev1.Pod) int {
		p.ManagedFields = nil
		b, _ := json.Marshal(p)
		return len(b)
	}
	s := fmt.Sprintf("stored pod %s: container %s, init container %s, volume of Secret %s; %d bytes of JSON",
		key, injector.SidecarContainerName, injector.InitContainerName, clientSecretName(key.Name), size(&pod))
	if err := cl.Get(ctx, client.ObjectKey{Namespace: nsMeshed, Name: "warm-up"}, &warm); err != nil {
		return s + fmt.Sprintf(" (the injector's warm-up pod: %v)", err)
	}
	return s + fmt.Sprintf(" (the injector's warm-up pod: %d)", size(&warm))
}

// meshedSettings are the injector settings of the meshed phase: serve reads
// the MeshConfig (as stored, the CRD's defaults applied); the in-process
// handler reads none and uses the defaults.
func meshedSettings(ctx context.Context, cl client.Client, inProcess bool) (injector.Settings, error) {
	if inProcess {
		return injector.DefaultSettings().Checked()
	}
	var mc configv1alpha3.MeshConfig
	if err := cl.Get(ctx, client.ObjectKey{Namespace: fsmNamespace, Name: fsmnames.MeshConfigName}, &mc); err != nil {
		return injector.Settings{}, fmt.Errorf("reading the MeshConfig for the sized webhook: %w", err)
	}
	return injector.SettingsFromMeshConfig(&mc).Checked()
}

// meshedMesh is the mesh the meshed phase's injector serves: serve's
// defaults (-serve-args that change its images or domains are not followed
// here), or the in-process handler's options.
func meshedMesh(inProcess bool) injector.Mesh {
	m := injector.Mesh{
		Name: "fsm", FSMNamespace: fsmNamespace, TrustDomain: "cluster.local", ClusterDomain: "cluster.local",
		SidecarImage: injector.DefaultSidecarImage, InitImage: injector.DefaultInitImage, HealthcheckImage: injector.DefaultHealthcheckImage,
	}
	if inProcess {
		m.SidecarImage, m.InitImage, m.HealthcheckImage = inProcessSidecarImage, inProcessInitImage, inProcessHealthcheckImage
	}
	return m
}
