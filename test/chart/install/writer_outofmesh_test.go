package install_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestWriterWaitsForNamespaceBackInMesh: pods admitted with a sidecar whose
// namespace then leaves the mesh (its monitored-by label removed, or
// flomesh.io/ignore added) before the writer controller creates their
// bootstrap Secrets, which the chart's Secret write policy then refuses.
// The writer reports each once, naming the namespace and the label to
// restore, instead of retrying refused creates; the replica restarts (its
// records lost: it then leaves the pods alone, unreported), and once the namespaces are back in the mesh the Secrets
// are written at once: before, the restarted writer's repair skipped the
// unlabelled namespace's pod for good and looped on the policy's refusal in
// the ignored one.
func TestWriterWaitsForNamespaceBackInMesh(t *testing.T) {
	ctx, env := startAPIServer(t, 8*time.Minute)
	helm := newHelm(t, env)
	vals, err := charttest.Values("fsm: {webhooks: {bootstrapSecretWriter: controller}}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.Install(ctx, vals); err != nil {
		t.Fatal(err)
	}
	c := env.Client
	bin := buildServer(ctx, t, t.TempDir())
	proc := startServe(ctx, t, env, bin, "--shutdown-drain=0s")
	caBundle := awaitInjectorReady(ctx, t, c, proc)
	spaces := map[string]struct {
		leave, back func(*corev1.Namespace)
		reason      string
	}{
		"left": {
			leave:  func(n *corev1.Namespace) { delete(n.Labels, fsmnames.MonitoredByLabel) },
			back:   func(n *corev1.Namespace) { n.Labels[fsmnames.MonitoredByLabel] = mesh },
			reason: "namespace left is not in mesh fsm: label it flomesh.io/monitored-by=fsm",
		},
		"ignored": {
			leave:  func(n *corev1.Namespace) { n.Labels[fsmnames.IgnoreLabel] = "true" },
			back:   func(n *corev1.Namespace) { delete(n.Labels, fsmnames.IgnoreLabel) },
			reason: "namespace ignored is excluded from mesh fsm by its label flomesh.io/ignore: remove the label",
		},
	}
	pods := map[string]*corev1.Pod{}
	for name := range spaces {
		createInjectedNamespace(ctx, t, c, name)
		pods[name] = injectedPod(t, proc, caBundle, name, "web")
	}
	// No webhook is reachable from envtest's apiserver: unregister them.
	_ = c.Delete(ctx, &admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwcName}})
	_ = c.Delete(ctx, &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwcName}})
	for name, s := range spaces {
		relabel(ctx, t, c, name, s.leave)
	}
	// The writer's cache, and the policy's, see the namespaces out first.
	time.Sleep(2 * time.Second)
	for _, p := range pods {
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	waitLog(t, proc, "bootstrap Secret not written until its namespace is back in the mesh", len(pods))
	proc.stop()
	<-proc.gone
	noRefusedWrites(t, proc)

	// The records are gone with the process: the restarted writer's repair
	// (DefaultRepairDelay after its informer lists the pods) has only the
	// pods and their namespaces.
	// Not Ready without its webhook registered (its probe is a dry-run
	// pod): its writer runs all the same.
	// A pod without a record is left alone while its namespace is out (it
	// may be another mesh's, or run on a Secret FSM wrote): nothing logged,
	// so wait out the repair's delay, and room for the retries the old
	// writer made.
	proc = startServe(ctx, t, env, bin, "--shutdown-drain=0s")
	waitLog(t, proc, `"msg":"Starting workers","controller":"injector-bootstrap-writer"`, 1)
	time.Sleep(injector.DefaultRepairDelay + 3*time.Second)
	if n := strings.Count(proc.logs.String(), "bootstrap Secret not written until its namespace is back in the mesh"); n != 0 {
		t.Errorf("the restarted writer reported %d pods it has no record of", n)
	}
	for name, p := range pods {
		if err := c.Get(ctx, bootstrapKey(p), &corev1.Secret{}); err == nil {
			t.Errorf("bootstrap Secret of %s/%s written while its namespace is out of the mesh", name, p.Name)
		}
	}
	noRefusedWrites(t, proc)

	for name, s := range spaces {
		relabel(ctx, t, c, name, s.back)
	}
	for name, p := range pods {
		key := bootstrapKey(p)
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if err := c.Get(ctx, key, &corev1.Secret{}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bootstrap Secret %s not written after namespace %s came back to the mesh:\n%s", key, name, proc.logs.String())
			}
		}
		wantEvent(ctx, t, c, p, spaces[name].reason)
	}
}

// noRefusedWrites checks that proc sent no create the chart's Secret write
// policy refused: each signed a certificate for nothing.
func noRefusedWrites(t *testing.T, proc *serveProc) {
	t.Helper()
	if strings.Contains(proc.logs.String(), "denied request") {
		t.Errorf("the writer sent creates the chart's Secret policy refuses:\n%s", proc.logs.String())
	}
}

// awaitInjectorReady waits for the injector to be Ready with its serving
// certificate registered, and returns the registered CA bundle.
func awaitInjectorReady(ctx context.Context, t *testing.T, c client.Client, proc *serveProc) []byte {
	t.Helper()
	var mwc admv1.MutatingWebhookConfiguration
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		err := c.Get(ctx, types.NamespacedName{Name: mwcName}, &mwc)
		if err == nil && validPEM(mwc.Webhooks[0].ClientConfig.CABundle) && proc.readyz("injector") {
			return mwc.Webhooks[0].ClientConfig.CABundle
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", proc.logs.String())
		}
	}
}

// injectedPod is the pod the injector's patch makes of a one-container pod
// (admitPod's) in namespace.
func injectedPod(t *testing.T, proc *serveProc, caBundle []byte, namespace, name string) *corev1.Pod {
	t.Helper()
	resp := admitPod(t, proc, caBundle, namespace, name)
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("injector response: %+v", resp)
	}
	orig, err := json.Marshal(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(orig)
	if err != nil {
		t.Fatalf("applying %s: %v", resp.Patch, err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(out, pod); err != nil {
		t.Fatal(err)
	}
	if pod.Labels[injector.ProxyUUIDLabel] == "" {
		t.Fatalf("no uuid in patch %s", resp.Patch)
	}
	return pod
}

func bootstrapKey(p *corev1.Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: p.Namespace, Name: fsmnames.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}
}

func relabel(ctx context.Context, t *testing.T, c client.Client, name string, change func(*corev1.Namespace)) {
	t.Helper()
	n := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: name}, n); err != nil {
		t.Fatal(err)
	}
	change(n)
	if err := c.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits up to 30 s for line to appear n times in proc's log; the
// checks after it tell what the writer did instead.
func waitLog(t *testing.T, proc *serveProc, line string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); strings.Count(proc.logs.String(), line) < n; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%q not logged %d times", line, n)
			return
		}
	}
}

// wantEvent checks that p got a BootstrapSecretNotWritten Warning saying
// reason.
func wantEvent(ctx context.Context, t *testing.T, c client.Client, p *corev1.Pod, reason string) {
	t.Helper()
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(p.Namespace)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range evs.Items {
		if e.Regarding.Name == p.Name && e.Reason == injector.EventBootstrapSecretNotWritten {
			if strings.Contains(e.Note, reason) {
				return
			}
			notes = append(notes, e.Note)
		}
	}
	t.Errorf("pod %s/%s: no %s Event saying %q; got %q", p.Namespace, p.Name, injector.EventBootstrapSecretNotWritten, reason, notes)
}
