package injector_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestMirrorPodNotInjected: a static pod's mirror pod, which the kubelet
// creates as system:node:<node>, is admitted unchanged in a monitored
// namespace with injection enabled, and no bootstrap Secret is written.
// Behind the apiserver as a production cluster runs it (the Node
// authorizer and the NodeRestriction admission plugin, which refuses a
// node's pod that references a Secret and runs again after a webhook
// changed the pod), an injected mirror pod was refused: the static pod was
// invisible in the API and each kubelet retry left another orphan
// bootstrap Secret (and a certificate issued). The kubelet runs the
// manifest, not the API object, so an injected mirror pod would show a
// sidecar that never runs anyway.
func TestMirrorPodNotInjected(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme}, APIServerFlags: map[string]string{
		// envtest's default is RBAC alone; a cluster's is Node,RBAC.
		"authorization-mode":       "Node,RBAC",
		"enable-admission-plugins": "NodeRestriction",
	}})
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}}); err != nil {
		t.Fatal(err)
	}
	h := tresorInjector(ctx, t, env, 2)
	registerInjector(ctx, t, env.Client, h, "injector-mirror-pod-test")
	const ns = "static-pods"
	injectedNamespace(ctx, t, env.Client, ns)

	const nodeName = "worker-1"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if err := env.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	kubelet, err := env.AddUser(envtest.User{Name: "system:node:" + nodeName, Groups: []string{"system:nodes"}}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	kubeletCfg := kubelet.Config()
	kubeletCfg.Timeout = env.Config.Timeout
	asNode, err := client.New(kubeletCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	// The mirror pod as the kubelet writes it: the config hash annotation,
	// bound to its node, owned by the Node, no ServiceAccount.
	mirror := pod("etcd-"+nodeName, ns)
	mirror.Annotations = map[string]string{"kubernetes.io/config.mirror": "5d0c0f4e4c1b0c7a8f2c6b3d9e1a7f00",
		"kubernetes.io/config.source": "file"}
	mirror.Spec.NodeName = nodeName
	mirror.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: nodeName, UID: node.UID,
		Controller: ptr.To(true)}}
	if err := asNode.Create(ctx, mirror); err != nil {
		t.Errorf("the kubelet's mirror pod refused: %v", err)
	} else {
		for _, c := range append(mirror.Spec.InitContainers, mirror.Spec.Containers...) {
			if c.Name != "app" {
				t.Errorf("mirror pod got container %s: the kubelet never runs it", c.Name)
			}
		}
		for _, v := range mirror.Spec.Volumes {
			t.Errorf("mirror pod got volume %s", v.Name)
		}
		if _, ok := mirror.Labels[injector.ProxyUUIDLabel]; ok {
			t.Errorf("mirror pod labelled %s", injector.ProxyUUIDLabel)
		}
	}
	if s := bootstrapSecrets(t, ctx, env.Client, ns); len(s) != 0 {
		t.Errorf("%d bootstrap Secrets written for the mirror pod (%s)", len(s), s[0].Name)
	}

	// The same pod created by a user is injected: the skip is the mirror
	// annotation's, not the namespace's or the node binding's.
	p := pod("web", ns)
	p.Spec.NodeName = nodeName
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatalf("create: %v", err)
	}
	if n := len(bootstrapSecrets(t, ctx, env.Client, ns)); len(p.Spec.InitContainers) != 1 || n != 1 {
		t.Errorf("a user's pod on the node: %d init containers, %d bootstrap Secrets in %s; want it injected, one Secret", len(p.Spec.InitContainers), n, ns)
	}
}
