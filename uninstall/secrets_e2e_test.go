package uninstall

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestHandOverBootstrapSecretsEnvtest: through a real apiserver, the
// uninstall makes each running meshed pod the owner of its Secret (one
// patch, existing owners kept), leaves a Secret its pod already owns
// untouched (same resourceVersion), deletes the Secret whose pod is gone,
// and leaves another mesh's Secret alone. A second run writes nothing.
func TestHandOverBootstrapSecretsEnvtest(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 0 // "gone" stands for a Secret older than the grace
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	newPod := func(id string) *corev1.Pod {
		p, err := cs.CoreV1().Pods("app").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Labels: map[string]string{injector.ProxyUUIDLabel: id}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	newSecret := func(mesh, id string, owners ...metav1.OwnerReference) *corev1.Secret {
		s, err := cs.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name:            fsmnames.BootstrapSecretName(id),
			Labels:          map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": mesh, injector.ProxyUUIDLabel: id},
			OwnerReferences: owners,
		}, Data: map[string][]byte{"key.pem": []byte("private")}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ownerOf := func(p *corev1.Pod) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID}
	}
	running := newPod("running")
	fsmOwned := newPod("fsm-owned")
	twoOwners := newPod("two-owners")
	stale := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "replaced", UID: "replaced-uid"}
	newSecret("fsm", "running")
	keptRV := newSecret("fsm", "fsm-owned", ownerOf(fsmOwned)).ResourceVersion
	newSecret("fsm", "two-owners", stale)
	newSecret("fsm", "gone")
	otherRV := newSecret("blue", "other").ResourceVersion

	meta := metadataFor(t, env.Config)
	if err := handOverBootstrapSecrets(ctx, cs, meta, "fsm", testr.New(t)); err != nil {
		t.Fatal(err)
	}
	get := func(id string) (*corev1.Secret, error) {
		return cs.CoreV1().Secrets("app").Get(ctx, fsmnames.BootstrapSecretName(id), metav1.GetOptions{})
	}
	for id, want := range map[string][]metav1.OwnerReference{
		"running":    {ownerOf(running)},
		"fsm-owned":  {ownerOf(fsmOwned)},
		"two-owners": {stale, ownerOf(twoOwners)},
		"other":      nil,
	} {
		s, err := get(id)
		if err != nil {
			t.Fatalf("Secret of %s: %v", id, err)
		}
		if len(s.OwnerReferences) != len(want) {
			t.Errorf("Secret of %s: owners %+v, want %+v", id, s.OwnerReferences, want)
			continue
		}
		for i := range want {
			if s.OwnerReferences[i].UID != want[i].UID || s.OwnerReferences[i].Kind != "Pod" || s.OwnerReferences[i].Name != want[i].Name {
				t.Errorf("Secret of %s: owner %d is %+v, want %+v", id, i, s.OwnerReferences[i], want[i])
			}
		}
		if string(s.Data["key.pem"]) != "private" {
			t.Errorf("Secret of %s lost its data: %q", id, s.Data)
		}
	}
	if s, _ := get("fsm-owned"); s.ResourceVersion != keptRV {
		t.Errorf("the Secret its pod owned already was written (resourceVersion %s, was %s)", s.ResourceVersion, keptRV)
	}
	if s, _ := get("other"); s.ResourceVersion != otherRV {
		t.Errorf("another mesh's Secret was written (resourceVersion %s, was %s)", s.ResourceVersion, otherRV)
	}
	if _, err := get("gone"); !apierrors.IsNotFound(err) {
		t.Errorf("the Secret whose pod is gone: %v, want NotFound", err)
	}

	// A retried hook: everything is settled, nothing is written.
	before, err := cs.CoreV1().Secrets("app").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := handOverBootstrapSecrets(ctx, cs, meta, "fsm", testr.New(t)); err != nil {
		t.Fatalf("second run: %v", err)
	}
	after, err := cs.CoreV1().Secrets("app").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rvs := map[string]string{}
	for _, s := range before.Items {
		rvs[s.Name] = s.ResourceVersion
	}
	for _, s := range after.Items {
		if rvs[s.Name] != s.ResourceVersion {
			t.Errorf("second run wrote %s (resourceVersion %s, was %s)", s.Name, s.ResourceVersion, rvs[s.Name])
		}
	}
	if len(after.Items) != len(before.Items) {
		t.Errorf("second run changed the Secrets: %d, was %d", len(after.Items), len(before.Items))
	}
}

func metadataFor(t *testing.T, cfg *rest.Config) metadata.Interface {
	t.Helper()
	m, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHandOverWaitsForAPodStillBeingCreated: the Secret is written inside
// the pod's create request, and a later webhook can hold that request after
// ours answered, up to the moment our last server stopped: the hook lists
// no pod for the Secret. Deleted then, the pod, stored a moment later,
// waits forever for its Secret volume (nothing of ours is left to rebuild
// it). Like the injector's controller, the hook deletes a Secret without a
// pod only once orphanGrace has passed since its creation; its pod, stored
// meanwhile, becomes its owner. Through a real apiserver.
func TestHandOverWaitsForAPodStillBeingCreated(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 3 * time.Second
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const id = "in-flight"
	if _, err := cs.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name:   fsmnames.BootstrapSecretName(id),
		Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": "fsm", injector.ProxyUUIDLabel: id},
	}, Data: map[string][]byte{"key.pem": []byte("private")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- handOverBootstrapSecrets(ctx, cs, metadataFor(t, env.Config), "fsm", testr.New(t)) }()
	time.Sleep(time.Second) // the pod's create request, held by a later webhook
	pod, err := cs.CoreV1().Pods("app").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{injector.ProxyUUIDLabel: id}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, err := cs.CoreV1().Secrets("app").Get(ctx, fsmnames.BootstrapSecretName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Secret of pod %s, stored 1 s after it: %v; want it kept, owned by its pod", pod.Name, err)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != pod.UID {
		t.Errorf("Secret owners %+v, want pod %s (%s)", s.OwnerReferences, pod.Name, pod.UID)
	}
}

// TestHandOverKeepsTheSecretOfARelabelledPod: a running pod whose
// fsm-proxy-uuid label was removed or changed (kubectl label, a GitOps tool
// reconciling a pod's labels) still mounts its bootstrap Secret, and the
// injector's controller never sweeps such a Secret. The uninstall found the
// pod by the label alone and deleted the Secret as an orphan: the pod could
// not start again (a node reboot) and nothing was left to rebuild it. Its
// Secret must go to the garbage collector with that pod as owner, as any
// running pod's does; and a Secret whose uuid a relabelled pod carries too
// must be owned by the pod that mounts it, not go with the other. Through a
// real apiserver.
func TestHandOverKeepsTheSecretOfARelabelledPod(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 0
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mounting := func(name, id string, labels map[string]string) *corev1.Pod {
		p := createMountingPod(ctx, t, cs, name, id, labels)
		if _, err := cs.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name:   fsmnames.BootstrapSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": "fsm", injector.ProxyUUIDLabel: id},
		}, Data: map[string][]byte{"key.pem": []byte("private")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unlabelled := mounting("unlabelled", "u1", map[string]string{"app": "web"})
	relabelled := mounting("relabelled", "u2", map[string]string{injector.ProxyUUIDLabel: "not-its-secret"})
	// Relabelled with another running pod's uuid, and listed after it.
	owner := mounting("owner", "u3", map[string]string{injector.ProxyUUIDLabel: "u3"})
	copycat := mounting("zz-copycat", "u4", map[string]string{injector.ProxyUUIDLabel: "u3"})

	if err := handOverBootstrapSecrets(ctx, cs, metadataFor(t, env.Config), "fsm", testr.New(t)); err != nil {
		t.Fatal(err)
	}
	for id, p := range map[string]*corev1.Pod{"u1": unlabelled, "u2": relabelled, "u3": owner, "u4": copycat} {
		s, err := cs.CoreV1().Secrets("app").Get(ctx, fsmnames.BootstrapSecretName(id), metav1.GetOptions{})
		if err != nil {
			t.Errorf("the Secret pod %s mounts: %v; want it kept, owned by the pod", p.Name, err)
			continue
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != p.UID {
			t.Errorf("the Secret pod %s mounts: owners %+v, want the pod (%s)", p.Name, s.OwnerReferences, p.UID)
		}
	}
}

// TestHandOverOwnsTheSecretByEveryPodMountingIt: a Secret two running pods
// mount (a copy of a meshed pod made by `kubectl debug --copy-to`, which
// drops the labels; a copy that kept them, so two pods carry the uuid) must
// be owned by both: the garbage collector deletes a dependent only once all
// its owners are gone. Owned by one, it went with that pod while the other
// still mounted it (the hand-over gave it one owner). Through a real
// apiserver.
func TestHandOverOwnsTheSecretByEveryPodMountingIt(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 0
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs := env.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"source", "kept-labels"} {
		if _, err := cs.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name:   fsmnames.BootstrapSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": "fsm", injector.ProxyUUIDLabel: id},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mounting := func(name, id string, labels map[string]string) *corev1.Pod {
		return createMountingPod(ctx, t, cs, name, id, labels)
	}
	want := map[string][]*corev1.Pod{
		"source": {
			mounting("source", "source", map[string]string{injector.ProxyUUIDLabel: "source"}),
			mounting("source-debug", "source", map[string]string{"app": "web"}),
		},
		"kept-labels": {
			mounting("kept", "kept-labels", map[string]string{injector.ProxyUUIDLabel: "kept-labels"}),
			mounting("kept-copy", "kept-labels", map[string]string{injector.ProxyUUIDLabel: "kept-labels"}),
		},
	}
	if err := handOverBootstrapSecrets(ctx, cs, metadataFor(t, env.Config), "fsm", testr.New(t)); err != nil {
		t.Fatal(err)
	}
	for id, pods := range want {
		s, err := cs.CoreV1().Secrets("app").Get(ctx, fsmnames.BootstrapSecretName(id), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s: %v", id, err)
		}
		owners := map[types.UID]bool{}
		for _, o := range s.OwnerReferences {
			owners[o.UID] = true
		}
		for _, p := range pods {
			if !owners[p.UID] {
				t.Errorf("Secret %s: owners %+v, want every pod mounting it, pod %s (%s) missing", s.Name, s.OwnerReferences, p.Name, p.UID)
			}
		}
		if len(s.OwnerReferences) != len(pods) {
			t.Errorf("Secret %s: %d owners, want %d", s.Name, len(s.OwnerReferences), len(pods))
		}
	}
}

// createMountingPod creates pod name in namespace app, labelled labels,
// whose bootstrap volume mounts the bootstrap Secret of uuid id.
func createMountingPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, id string, labels map[string]string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("app").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "app"}},
			Volumes: []corev1.Volume{{Name: injector.BootstrapVolumeName, VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: fsmnames.BootstrapSecretName(id)}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHandOverListsNamespacesAtOnce: finding the pods that mount a Secret
// lists a namespace's pods (full objects, pages of 500: seconds in a large
// namespace). One lock held through every namespace's list made the
// hand-over's workers wait for each namespace in turn; the namespaces of a
// large cluster must be listed several at once. Through a real apiserver
// whose pod lists take 300 ms here.
func TestHandOverListsNamespacesAtOnce(t *testing.T) {
	defer func(d time.Duration) { orphanGrace = d }(orphanGrace)
	orphanGrace = 0
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs := env.Clientset
	const namespaces = 4
	for i := range namespaces {
		ns := fmt.Sprintf("app-%d", i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A pod whose uuid label was removed: found by its volume.
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "relabelled"},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "app"}},
				Volumes: []corev1.Volume{{Name: injector.BootstrapVolumeName, VolumeSource: corev1.VolumeSource{
					Secret: &corev1.SecretVolumeSource{SecretName: fsmnames.BootstrapSecretName("u")}}}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name:   fsmnames.BootstrapSecretName("u"),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": "fsm", injector.ProxyUUIDLabel: "u"},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	slow := &slowRequests{delay: 300 * time.Millisecond, match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods")
	}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { slow.next = rt; return slow })
	slowCS, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := handOverBootstrapSecrets(ctx, slowCS, metadataFor(t, env.Config), "fsm", testr.New(t)); err != nil {
		t.Fatal(err)
	}
	if p := slow.peak.Load(); p < 2 {
		t.Errorf("at most %d namespace(s) listed at once for %d namespaces; want several", p, namespaces)
	}
	for i := range namespaces {
		s, err := cs.CoreV1().Secrets(fmt.Sprintf("app-%d", i)).Get(ctx, fsmnames.BootstrapSecretName("u"), metav1.GetOptions{})
		if err != nil {
			t.Errorf("Secret of the relabelled pod of app-%d: %v, want it owned by the pod", i, err)
			continue
		}
		if len(s.OwnerReferences) != 1 {
			t.Errorf("Secret of app-%d: owners %+v, want the relabelled pod", i, s.OwnerReferences)
		}
	}
}
