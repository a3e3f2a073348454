//go:build e2enode

package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/fsmroot"
	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/meshimages"
	"github.com/flomesh-io/fsm-webhooks/test/node"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// FSM's names in the takeover (docs/migrate-from-fsm.md). The envtest
// takeover tests (test/chart/install, takeover_*_test.go) hold the same facts
// in another package's test files; the few this test needs are repeated
// here rather than moved, so that neither suite's files change for the
// other.
const (
	fsmMesh       = "fsm"
	fsmWebhookCfg = "fsm-webhook-" + fsmMesh
	fsmValidCfg   = "fsm-validator-mesh-" + fsmMesh
	fsmCASecret   = "fsm-ca-bundle"
	fsmMeshConfig = "fsm-mesh-config"
	// servedByFSM is the annotation FSM's injector stand-in
	// (test/fsminjector) adds to the pods it admits.
	servedByFSM = "takeover-test.flomesh.io/served-by-fsm"
	// fsmInjectorImage is the stand-in's image: FSM's Deployment runs it
	// with FSM's command and arguments.
	fsmInjectorImage = "localhost/fsm-node/fsm-injector-standin:v1"

	switchNS = "switch-app"
	// switchEvery is the load's interval (docs/migrate-from-fsm.md: a pod
	// every 100 ms).
	switchEvery = 100 * time.Millisecond
	// sampleEvery: every sampleEvery-th pod of the load (one every 5 s)
	// runs under the kubelet; the others carry a scheduling gate, so the
	// 2-core node runs tens of pods, not a thousand.
	sampleEvery = 50
	sampleLabel = "takeover-sample"
	neverGate   = "fsm-node.flomesh.io/never"
)

// fsmInjectorStandIn builds test/fsminjector as FSM's injector binary's
// path in FSM's image, /fsm-injector.
func fsmInjectorStandIn(t *testing.T) images.Spec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fsm-injector")
	if err := images.GoBinary(ctx, testenv.RepoRoot(), "./test/fsminjector", bin); err != nil {
		t.Fatal(err)
	}
	return images.Spec{
		Tag:        fsmInjectorImage,
		Files:      []images.File{{Path: "/fsm-injector", Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/fsm-injector"},
	}
}

// TestTakeoverOnNode runs docs/migrate-from-fsm.md's two-step takeover from
// FSM v1.5.1 and its two-step hand-back on the single-node cluster, while a
// pod is created every 100 ms in a meshed namespace: FSM's fsm-injector
// Deployment (its chart's, running the stand-in image) registers itself and
// admits, the chart with this repository's image takes over with Helm,
// FSM's injector is scaled to zero, then back up, `helm upgrade
// --reuse-values --set fsm.webhooks.handBack=true` and `helm uninstall`
// (whose pre-delete hook Job runs under the kubelet) hand the mesh back.
// Every webhook call goes through the Services, kube-proxy and the pods'
// network. It requires no failed create (FSM's injector's own losses as it
// stops are counted apart, as TestTakeoverWindow does), every pod injected
// by exactly one injector, a sample of the pods running under the kubelet
// (ours with the Pipy sidecar), and FSM's MeshConfig and CA Secret untouched.
func TestTakeoverOnNode(t *testing.T) {
	specs, pulls := meshedPodImages(context.Background(), t)
	specs = append(specs, fsmWebhooksImage(t), fsmInjectorStandIn(t))
	mainJS, err := os.ReadFile("testdata/sidecar/main.js")
	if err != nil {
		t.Fatal(err)
	}
	c := node.Start(t, node.Options{Images: specs, Pulls: pulls, ClusterDNS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cs := c.Clientset
	start := time.Now()

	root := fsmroot.Must(t)
	repoURL := installFSMOnNode(ctx, t, c, root)
	caBefore, mcBefore := fsmData(ctx, t, c)
	c.CreateNamespace(t, switchNS, map[string]string{"flomesh.io/monitored-by": fsmMesh})
	// A Ready pod is routed to once kube-proxy has synced its endpoint: the
	// load must not begin before (one run lost its first 3 creates to
	// "connection refused" on FSM's Service).
	waitFSMAdmitting(t, c)
	t.Logf("FSM's objects installed, its injector Ready and registered %s after the node", time.Since(start).Round(100*time.Millisecond))

	// What FSM's controller does for a proxy: publish its codebase. Only
	// the sample pods run, so only theirs.
	pubCtx, stopPub := context.WithCancel(ctx)
	var pubDone sync.WaitGroup
	var pubErr error
	pubDone.Go(func() { pubErr = publishSamples(pubCtx, cs, repoURL, mainJS) })
	defer func() {
		stopPub()
		pubDone.Wait()
		if pubErr != nil {
			t.Errorf("publishing the sample pods' codebases: %v", pubErr)
		}
	}()

	helm := newNodeHelm(t, c)
	load := startSwitchLoad(cs, switchNS)
	defer load.stop()
	mark := func(step string) {
		t.Logf("%s %s: %s", time.Now().Format("15:04:05.000"), step, load.summary())
	}
	load.waitFor(t, "FSM's injector admits pods", time.Minute, func(n switchCounts) bool { return n.fsm >= 5 })
	mark("FSM serving")
	// fsm-mesh-config read at an old version throughout: our converter
	// must not point the CRD at fsm-bootstrap while that Service is still
	// FSM's (step 1; FSM's bootstrap, here at zero, serves no conversion).
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	reader := startOldVersionReader(t, c.Config, chartNS, fsmMeshConfig)
	defer reader.stop()

	// Takeover, step 1: everything but the Services.
	if err := helm.install(ctx, map[string]any{"fsm": map[string]any{
		"meshConfig": map[string]any{"create": false}, "webhooks": map[string]any{"createServices": false},
	}}); err != nil {
		t.Fatalf("takeover step 1 (helm install --take-ownership --force-conflicts): %v (logs in %s)", err, c.LogDir)
	}
	mark("step 1 installed")
	waitWebhooksReady(t, c, chartImage) // kubectl rollout status
	mark("our pods Ready")
	// Two of the converter's resyncs with its pods Ready: the Service is
	// still FSM's, so the stanza must still be FSM's None.
	time.Sleep(2 * webhooks.DefaultResyncInterval)
	if s, err := conversionStrategy(ctx, dyn); err != nil || s == string(apiextv1.WebhookConverter) {
		t.Errorf("after step 1, our converter Ready: MeshConfig CRD conversion %q (%v), want it left as FSM set it while fsm-bootstrap routes to FSM's bootstrap", s, err)
	}
	// Step 2: the Services change hands (the crd-upgrade hook Job runs).
	if err := helm.upgrade(ctx, map[string]any{"fsm": map[string]any{"webhooks": map[string]any{"createServices": true}}}, true); err != nil {
		t.Fatalf("takeover step 2 (helm upgrade --reuse-values --take-ownership --force-conflicts): %v (logs in %s)", err, c.LogDir)
	}
	mark("step 2 upgraded")
	c.WaitFor(t, "our converter to publish the MeshConfig CRD's conversion stanza once fsm-bootstrap routes to it", 3*time.Minute, func(ctx context.Context) error {
		if s, err := conversionStrategy(ctx, dyn); err != nil || s != string(apiextv1.WebhookConverter) {
			return fmt.Errorf("conversion %q (%v)", s, err)
		}
		return nil
	})
	mark("conversion stanza published")
	// Step 3, at once: FSM's injector and bootstrap to zero.
	fsmStopBegan := time.Now()
	scaleFSM(ctx, t, cs, 0, "fsm-injector", "fsm-bootstrap")
	c.WaitFor(t, "FSM's injector pod gone", 2*time.Minute, func(ctx context.Context) error {
		return fsmInjectorPods(ctx, cs, 0)
	})
	fsmStopped := time.Now()
	mark("FSM's injector stopped")
	oursAt := load.counts(phaseTakeover).ours
	load.waitFor(t, "our injector admits pods", time.Minute, func(n switchCounts) bool { return n.ours >= oursAt+10 })
	time.Sleep(3 * time.Second)
	mark("taken over")
	load.setPhase(phaseHandBack)

	// Hand-back, step 1: FSM's injector back; on start it rewrites its
	// configuration, which still reaches our pods through the Service.
	// fsm-bootstrap stays at zero: it has no stand-in here.
	scaleFSM(ctx, t, cs, 1, "fsm-injector")
	c.WaitFor(t, "FSM's injector Ready again", 2*time.Minute, func(ctx context.Context) error {
		return fsmInjectorPods(ctx, cs, 1)
	})
	mark("hand-back step 1: FSM's injector Ready")
	oursAt = load.counts(phaseHandBack).ours
	load.waitFor(t, "our injector admits through FSM's rewritten configuration", time.Minute, func(n switchCounts) bool { return n.ours >= oursAt+5 })
	// Step 2: the Services back to FSM's pods.
	if err := helm.upgrade(ctx, map[string]any{"fsm": map[string]any{"webhooks": map[string]any{"handBack": true}}}, false); err != nil {
		t.Fatalf("hand-back step 2 (helm upgrade --reuse-values --set fsm.webhooks.handBack=true): %v (logs in %s)", err, c.LogDir)
	}
	mark("hand-back step 2 upgraded")
	// Step 3: helm uninstall; its pre-delete hook Job runs on the node.
	if err := helm.uninstall(); err != nil {
		t.Fatalf("hand-back step 3 (helm uninstall): %v (logs in %s)", err, c.LogDir)
	}
	mark("hand-back step 3 uninstalled")
	fsmAt := load.counts(phaseHandBack).fsm
	load.waitFor(t, "FSM's injector admits after the uninstall", time.Minute, func(n switchCounts) bool { return n.fsm >= fsmAt+30 })
	load.stop()
	reader.stop()
	t.Logf("the takeover and hand-back took %s under load", time.Since(start).Round(time.Second))
	reads, readFailures := reader.results()
	t.Logf("fsm-mesh-config read at v1alpha1 every 100 ms throughout: %d reads, %d failed", reads, len(readFailures))
	if len(readFailures) > 0 {
		t.Errorf("%d of %d v1alpha1 reads of %s failed, want 0:\n%s", len(readFailures), reads, fsmMeshConfig, strings.Join(readFailures[:min(len(readFailures), 10)], "\n"))
	}

	take, back := load.counts(phaseTakeover), load.counts(phaseHandBack)
	lost, failed := load.lostInFSMStop(fsmStopBegan, fsmStopped)
	t.Logf("takeover, a pod every 100 ms: %d admitted by FSM, %d by ours, %d failed (%d of them lost by FSM's injector as it stopped), %d without a sidecar",
		take.fsm, take.ours, take.failed, len(lost), take.neither)
	t.Logf("hand-back, a pod every 100 ms: %d admitted by ours, %d by FSM, %d failed, %d without a sidecar",
		back.ours, back.fsm, back.failed, back.neither)
	for _, f := range lost {
		t.Logf("lost by FSM's injector's stop (no drain): %s", f)
	}
	if len(failed) > 0 {
		t.Errorf("%d pod creates failed, want 0:\n%s", len(failed), strings.Join(failed[:min(len(failed), 10)], "\n"))
	}
	for name, n := range map[string]switchCounts{"takeover": take, "hand-back": back} {
		if n.fsm == 0 || n.ours == 0 {
			t.Errorf("%s: admitted by FSM %d, by ours %d: the load must span the switch", name, n.fsm, n.ours)
		}
		if n.neither != 0 || n.both != 0 {
			t.Errorf("%s: %d pods admitted without a sidecar, %d injected by both, want 0", name, n.neither, n.both)
		}
	}

	t.Run("every pod stored as exactly one injector made it", func(t *testing.T) {
		checkStoredPods(ctx, t, cs, load.created())
	})
	t.Run("sample pods run under the kubelet", func(t *testing.T) {
		checkSamplesRun(t, c)
	})
	t.Run("FSM's MeshConfig and CA Secret untouched", func(t *testing.T) {
		caAfter, mcAfter := fsmData(ctx, t, c)
		if caAfter.ResourceVersion != caBefore.ResourceVersion || !maps.EqualFunc(caAfter.Data, caBefore.Data, bytes.Equal) {
			t.Errorf("%s written: resourceVersion %s -> %s, data equal %v", fsmCASecret, caBefore.ResourceVersion, caAfter.ResourceVersion,
				maps.EqualFunc(caAfter.Data, caBefore.Data, bytes.Equal))
		}
		if mcAfter.GetResourceVersion() != mcBefore.GetResourceVersion() || !equality.Semantic.DeepEqual(mcAfter.Object["spec"], mcBefore.Object["spec"]) {
			t.Errorf("%s written: resourceVersion %s -> %s", fsmMeshConfig, mcBefore.GetResourceVersion(), mcAfter.GetResourceVersion())
		}
	})
	t.Run("handed back: FSM's configuration and Services", func(t *testing.T) {
		checkNodeHandedBack(ctx, t, cs, root.CertPEM)
	})
}

// waitFSMAdmitting waits until three dry-run pod creates in a row in
// switchNS are admitted by FSM's injector through its Service.
func waitFSMAdmitting(t *testing.T, c *node.Cluster) {
	t.Helper()
	ok := 0
	c.WaitFor(t, "three dry-run pod creates in a row admitted by FSM's injector", 2*time.Minute, func(ctx context.Context) error {
		p, err := c.Clientset.CoreV1().Pods(switchNS).Create(ctx, switchPod("probe", false), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			ok = 0
			return err
		}
		if by := admittedBy(p); by != "fsm" {
			ok = 0
			return fmt.Errorf("dry-run pod admitted by %s", by)
		}
		if ok++; ok < 3 {
			return fmt.Errorf("%d dry-run creates admitted by FSM in a row", ok)
		}
		return nil
	})
}

// fsmData is FSM's CA Secret and MeshConfig as stored.
func fsmData(ctx context.Context, t *testing.T, c *node.Cluster) (*corev1.Secret, *unstructured.Unstructured) {
	t.Helper()
	ca, err := c.Clientset.CoreV1().Secrets(chartNS).Get(ctx, fsmCASecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mc := &unstructured.Unstructured{}
	mc.SetAPIVersion("config.flomesh.io/v1alpha3")
	mc.SetKind("MeshConfig")
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: chartNS, Name: fsmMeshConfig}, mc); err != nil {
		t.Fatal(err)
	}
	return ca, mc
}

// scaleFSM is `kubectl -n fsm-system scale deploy/<name>... --replicas`.
func scaleFSM(ctx context.Context, t *testing.T, cs kubernetes.Interface, replicas int32, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := cs.AppsV1().Deployments(chartNS).UpdateScale(ctx, name, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNS},
			Spec:       autoscalingv1.ScaleSpec{Replicas: replicas},
		}, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("scaling %s to %d: %v", name, replicas, err)
		}
	}
}

// fsmInjectorPods is nil once FSM's injector has want pods, all Ready (a
// rollout status), or none left at all when want is 0.
func fsmInjectorPods(ctx context.Context, cs kubernetes.Interface, want int) error {
	pods, err := cs.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app=fsm-injector"})
	if err != nil {
		return err
	}
	ready := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			ready++
		}
	}
	if len(pods.Items) != want || ready != want {
		return fmt.Errorf("%d pods, %d Ready, want %d: %s", len(pods.Items), ready, want, podsSummary(ctx, cs, chartNS))
	}
	return nil
}

// fsmReference is FSM v1.5.1's recorded install (read-only corpus beside
// the repository).
func fsmReference(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "..", "shared", "fsm-reference", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("FSM v1.5.1's reference corpus: %v", err)
	}
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := d.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) != 0 {
			out = append(out, u)
		}
	}
}

// installFSMOnNode creates what FSM v1.5.1 leaves in a cluster, as the
// envtest tests' installFSM does, and runs its pods: the Services and the
// chart's empty webhook configurations from FSM's install; its injector's
// Deployment with the stand-in's image (and no init container: it waits for
// fsm-bootstrap); its controller's Deployment with its pipy-repo container
// only (the repo the sidecars load from; FSM's controller binary is not
// run); its bootstrap's Deployment at zero replicas (no stand-in: the CRD
// update it makes on start is not emulated here); FSM's MeshConfig CRD; the
// CA Secret; the validating configuration FSM's controller creates at run
// time; and fsm-mesh-config from FSM's preset with two settings an operator
// changed (the sidecar's log level; its image, to the Pipy this node has).
// It waits until FSM's injector is Ready and has registered fsm-webhook-fsm,
// and returns the repo's URL from the host.
func installFSMOnNode(ctx context.Context, t *testing.T, c *node.Cluster, root fsmroot.Root) string {
	t.Helper()
	cl := c.Client
	c.CreateNamespace(t, chartNS, nil)
	create := func(o client.Object) {
		t.Helper()
		if err := cl.Create(ctx, o); err != nil {
			t.Fatalf("%T %s: %v", o, o.GetName(), err)
		}
	}
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fsmCASecret, Namespace: chartNS}, Data: root.SecretData()})
	for _, o := range fsmInjectorRBAC() {
		create(o)
	}
	for _, u := range fsmReference(t, "crds/config.flomesh.io_meshconfigs.yaml") {
		create(u)
	}
	wanted := map[string]bool{
		"Service/fsm-bootstrap": true, "Service/fsm-injector": true, "Service/fsm-controller": true, "Service/fsm-validator": true,
		"Deployment/fsm-bootstrap": true, "Deployment/fsm-controller": true, "Deployment/fsm-injector": true,
		"MutatingWebhookConfiguration/flomesh-mutating-webhook-configuration":     true,
		"ValidatingWebhookConfiguration/flomesh-validating-webhook-configuration": true,
	}
	for _, u := range fsmReference(t, "fsm-install-v1.5.1.yaml") {
		id := u.GetKind() + "/" + u.GetName()
		if !wanted[id] {
			continue
		}
		delete(wanted, id)
		var o client.Object = u
		if u.GetKind() == "Deployment" {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				t.Fatal(err)
			}
			if err := runFSMDeploymentOnNode(&d); err != nil {
				t.Fatal(err)
			}
			o = &d
		}
		// As Helm's install of FSM's release "fsm" marks them.
		l := o.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l["app.kubernetes.io/managed-by"] = "Helm"
		o.SetLabels(l)
		o.SetAnnotations(map[string]string{"meta.helm.sh/release-name": "fsm", "meta.helm.sh/release-namespace": chartNS})
		create(o)
	}
	if len(wanted) != 0 {
		t.Fatalf("not in FSM's install reference: %v", slices.Sorted(maps.Keys(wanted)))
	}
	create(&admv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: fsmValidCfg, Labels: map[string]string{
			"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": fsmMesh, "app.kubernetes.io/version": "v1.5.1", "app": "fsm-controller",
		}},
		Webhooks: []admv1.ValidatingWebhook{{
			Name: "fsm-validator.k8s.io",
			ClientConfig: admv1.WebhookClientConfig{
				Service:  &admv1.ServiceReference{Namespace: chartNS, Name: "fsm-validator", Port: ptr.To[int32](9093), Path: ptr.To("/validate")},
				CABundle: root.CertPEM,
			},
			Rules:                   []admv1.RuleWithOperations{{Operations: []admv1.OperationType{admv1.Create, admv1.Update}, Rule: admv1.Rule{APIGroups: []string{"policy.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"*"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"flomesh.io/monitored-by": fsmMesh}},
			SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
			AdmissionReviewVersions: []string{"v1"},
		}},
	})
	mc := fsmReference(t, "meshconfig-preset-v1alpha3.yaml")[0]
	for _, f := range []struct {
		value string
		path  []string
	}{
		{"debug", []string{"spec", "sidecar", "logLevel"}},
		// FSM's preset names Pipy 1.5.14; the node has test/meshimages'.
		{meshimages.SidecarImage, []string{"spec", "sidecar", "sidecarImage"}},
	} {
		if err := unstructured.SetNestedField(mc.Object, f.value, f.path...); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(t, "FSM's MeshConfig created (its CRD served)", time.Minute, func(ctx context.Context) error {
		return cl.Create(ctx, mc.DeepCopy())
	})

	var repo string
	c.WaitFor(t, "FSM's injector Ready and registered, its controller's repo Ready", 3*time.Minute, func(ctx context.Context) error {
		if err := fsmInjectorPods(ctx, c.Clientset, 1); err != nil {
			return fmt.Errorf("fsm-injector: %w", err)
		}
		mwc, err := c.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, fsmWebhookCfg, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(mwc.Webhooks) != 1 || !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, root.CertPEM) {
			return fmt.Errorf("%s: %d webhooks, want FSM's one with the root as caBundle", fsmWebhookCfg, len(mwc.Webhooks))
		}
		pods, err := c.Clientset.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app=fsm-controller"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if podReady(&p) {
				repo = fmt.Sprintf("http://%s:%d", p.Status.PodIP, meshimages.RepoPort)
				return nil
			}
		}
		return fmt.Errorf("fsm-controller not Ready: %s", podsSummary(ctx, c.Clientset, chartNS))
	})
	return repo
}

// runFSMDeploymentOnNode adapts one of FSM's Deployments to the node: images
// it has, no init container (FSM's wait for fsm-bootstrap's health and
// unpack the controller's scripts with fsm-curl, which is not here).
func runFSMDeploymentOnNode(d *appsv1.Deployment) error {
	spec := &d.Spec.Template.Spec
	spec.InitContainers = nil
	switch d.Name {
	case "fsm-injector":
		if len(spec.Containers) != 1 || spec.Containers[0].Name != "fsm-injector" {
			return fmt.Errorf("FSM's fsm-injector Deployment: containers %v, want fsm-injector", containerNames(spec.Containers))
		}
		// FSM's command (/fsm-injector) and arguments, the stand-in's image.
		spec.Containers[0].Image = fsmInjectorImage
		spec.Containers[0].ImagePullPolicy = corev1.PullNever
		spec.ServiceAccountName = "fsm-injector-standin"
	case "fsm-controller":
		repo := findContainer(spec.Containers, "fsm-pipy-repo")
		if repo == nil || repo.Image != meshimages.RepoImage {
			return fmt.Errorf("FSM's fsm-controller Deployment: no fsm-pipy-repo container running %s: %v", meshimages.RepoImage, containerNames(spec.Containers))
		}
		// A no-GUI Pipy answers 404 on /, FSM's probe path.
		for _, p := range []*corev1.Probe{repo.ReadinessProbe, repo.LivenessProbe} {
			if p != nil && p.HTTPGet != nil {
				p.HTTPGet.Path = "/api/v1/repo"
			}
		}
		repo.ImagePullPolicy = corev1.PullNever
		spec.Containers = []corev1.Container{*repo}
		spec.Volumes = nil
	case "fsm-bootstrap":
		// Its image is not on the node and must not be pulled.
		d.Spec.Replicas = ptr.To[int32](0)
		for i := range spec.Containers {
			spec.Containers[i].ImagePullPolicy = corev1.PullNever
		}
	}
	return nil
}

// fsmInjectorRBAC is what the stand-in needs, no more: read the CA Secret,
// create its configuration, get and update it (FSM's ServiceAccount "fsm",
// which FSM's chart binds to far more for FSM's informers, is created
// without a binding).
func fsmInjectorRBAC() []client.Object {
	const name = "fsm-injector-standin"
	return []client.Object{
		// FSM's ServiceAccount, which its other Deployments name; bound
		// to nothing here (the repo container needs no API access).
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "fsm", Namespace: chartNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNS}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNS}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{fsmCASecret}, Verbs: []string{"get"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNS},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: chartNS}}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{admv1.GroupName}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"create"}},
			{APIGroups: []string{admv1.GroupName}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{fsmWebhookCfg}, Verbs: []string{"get", "update"}},
		}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: chartNS}}},
	}
}

// nodeHelm is `helm -n fsm-system` with the node's kubeconfig (Helm 4 SDK),
// for the takeover's flags, which charttest.Cluster does not take.
type nodeHelm struct{ cfg *action.Configuration }

func newNodeHelm(t *testing.T, c *node.Cluster) *nodeHelm {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = ptr.To(c.Kubeconfig)
	flags.Namespace = ptr.To(chartNS)
	flags.CacheDir = ptr.To(filepath.Join(t.TempDir(), "cache"))
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(flags, chartNS, "secret"); err != nil {
		t.Fatal(err)
	}
	return &nodeHelm{cfg: cfg}
}

// install is `helm install --take-ownership --force-conflicts`.
func (h *nodeHelm) install(ctx context.Context, values map[string]any) error {
	ch, err := charttest.Load()
	if err != nil {
		return err
	}
	in := action.NewInstall(h.cfg)
	in.ReleaseName, in.Namespace = charttest.ReleaseName, chartNS
	in.WaitStrategy, in.Timeout = kube.HookOnlyStrategy, 3*time.Minute
	in.TakeOwnership, in.ForceConflicts = true, true
	_, err = in.RunWithContext(ctx, ch, values)
	return err
}

// upgrade is `helm upgrade --reuse-values --set …`, with --take-ownership
// --force-conflicts when takeOwnership.
func (h *nodeHelm) upgrade(ctx context.Context, set map[string]any, takeOwnership bool) error {
	ch, err := charttest.Load()
	if err != nil {
		return err
	}
	up := action.NewUpgrade(h.cfg)
	up.Namespace, up.ReuseValues = chartNS, true
	up.WaitStrategy, up.Timeout = kube.HookOnlyStrategy, 3*time.Minute
	up.TakeOwnership, up.ForceConflicts = takeOwnership, takeOwnership
	_, err = up.RunWithContext(ctx, charttest.ReleaseName, ch, set)
	return err
}

// uninstall is `helm uninstall`, hooks included.
func (h *nodeHelm) uninstall() error {
	un := action.NewUninstall(h.cfg)
	un.WaitStrategy, un.Timeout = kube.HookOnlyStrategy, 3*time.Minute
	_, err := un.Run(charttest.ReleaseName)
	return err
}

const (
	phaseTakeover = "takeover"
	phaseHandBack = "hand-back"
)

// switchCreate is one create of the load.
type switchCreate struct {
	name   string
	phase  string
	at     time.Time
	by     string // "fsm", "ours", "both", "neither"; "" when the create failed
	sample bool
	err    error
}

type switchCounts struct{ fsm, ours, both, neither, failed int }

// switchLoad creates a pod every switchEvery in a meshed namespace and
// records who admitted each, as TestTakeoverWindow's podLoad does: FSM's
// injector (its annotation), ours (the proxy uuid label), both, or none.
type switchLoad struct {
	mu    sync.Mutex
	phase string
	res   []switchCreate
	stop  func()
}

func startSwitchLoad(cs kubernetes.Interface, ns string) *switchLoad {
	l := &switchLoad{phase: phaseTakeover}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	wg.Go(func() {
		tick := time.NewTicker(switchEvery)
		defer tick.Stop()
		inFlight := make(chan struct{}, 64)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.mu.Lock()
			r := switchCreate{name: fmt.Sprintf("switch-%05d", i), phase: l.phase, at: time.Now(), sample: i%sampleEvery == 0}
			l.mu.Unlock()
			select {
			case inFlight <- struct{}{}:
			default:
				r.err = errors.New("skipped: 64 creates in flight")
				l.record(r)
				continue
			}
			wg.Go(func() {
				defer func() { <-inFlight }()
				// Not ctx: a create in flight at stop is counted.
				cctx, ccancel := context.WithTimeout(context.Background(), 45*time.Second)
				defer ccancel()
				p, err := cs.CoreV1().Pods(ns).Create(cctx, switchPod(r.name, r.sample), metav1.CreateOptions{})
				if r.err = err; err == nil {
					r.by = admittedBy(p)
				}
				l.record(r)
			})
		}
	})
	return l
}

func (l *switchLoad) record(r switchCreate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res = append(l.res, r)
}

func (l *switchLoad) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

func (l *switchLoad) counts(phase string) switchCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n switchCounts
	for _, r := range l.res {
		if r.phase != phase {
			continue
		}
		switch r.by {
		case "fsm":
			n.fsm++
		case "ours":
			n.ours++
		case "both":
			n.both++
		case "neither":
			n.neither++
		default:
			n.failed++
		}
	}
	return n
}

func (l *switchLoad) summary() string {
	l.mu.Lock()
	phase := l.phase
	l.mu.Unlock()
	n := l.counts(phase)
	return fmt.Sprintf("%s: admitted by FSM %d, by ours %d, failed %d, without sidecar %d", phase, n.fsm, n.ours, n.failed, n.neither)
}

// waitFor waits until cond holds for the current phase's counts.
func (l *switchLoad) waitFor(t *testing.T, what string, timeout time.Duration, cond func(switchCounts) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		phase := l.phase
		l.mu.Unlock()
		if cond(l.counts(phase)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s)", what, timeout, l.summary())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// created are the successful creates.
func (l *switchLoad) created() []switchCreate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(l.res), func(r switchCreate) bool { return r.err != nil })
}

// lostInFSMStop splits the failed creates into those FSM's injector lost as
// it stopped and the rest (lostInFSMStop).
func (l *switchLoad) lostInFSMStop(began, ended time.Time) (lost, other []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.res {
		if r.err == nil {
			continue
		}
		msg := r.at.Format("15:04:05.000") + " " + r.name + ": " + r.err.Error()
		if lostInFSMStop(r.err.Error(), r.at, began, ended) {
			lost = append(lost, msg)
		} else {
			other = append(other, msg)
		}
	}
	return lost, other
}

// lostInFSMStop is whether a create that began at and failed with msg is
// one FSM's injector lost as it stopped: FSM v1.5.1 returns from main on
// SIGTERM while its webhook server begins Shutdown, with no drain
// (pkg/signals, pkg/webhook/server.go), so a call on a connection to its
// pod as that closes fails with a lost connection, in any scale-down of
// FSM's injector. Such a create began at most a webhook timeout (30 s)
// before the stop began and no later than the pod was gone; a trust or
// routing window of the procedure shows as any other error.
func lostInFSMStop(msg string, at, began, ended time.Time) bool {
	connLost := false
	for _, s := range []string{"use of closed network connection", "connection reset by peer", "EOF", "broken pipe"} {
		connLost = connLost || strings.Contains(msg, s)
	}
	return connLost && strings.Contains(msg, `"fsm-inject.k8s.io"`) && !at.Before(began.Add(-30*time.Second)) && !at.After(ended)
}

// switchPod is a pod of the load: a sample pod runs (its containers'
// images are on the node); the others are held by a scheduling gate.
func switchPod(name string, sample bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"load": "switch"},
			Annotations: map[string]string{"flomesh.io/sidecar-injection": "enabled"},
		},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "app", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever, Args: []string{"pause"},
			}},
		},
	}
	if sample {
		p.Labels[sampleLabel] = "true"
	} else {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: neverGate}}
	}
	return p
}

// admittedBy says whose injection the stored pod p carries.
func admittedBy(p *corev1.Pod) string {
	fsm, ours := p.Annotations[servedByFSM] != "", p.Labels[proxyUUIDLabel] != ""
	switch {
	case fsm && ours:
		return "both"
	case fsm:
		return "fsm"
	case ours:
		return "ours"
	}
	return "neither"
}

// checkStoredPods: every pod the load created is stored as exactly one
// injector made it -- FSM's: its annotation and no sidecar; ours: the Pipy
// sidecar and fsm-init, and the pod's bootstrap Secret.
func checkStoredPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, created []switchCreate) {
	pods, err := cs.CoreV1().Pods(switchNS).List(ctx, metav1.ListOptions{LabelSelector: "load=switch"})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := cs.CoreV1().Secrets(switchNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range secrets.Items {
		have[s.Name] = true
	}
	byName := map[string]*corev1.Pod{}
	for i := range pods.Items {
		byName[pods.Items[i].Name] = &pods.Items[i]
	}
	var bad []string
	for _, r := range created {
		p := byName[r.name]
		if p == nil {
			bad = append(bad, r.name+": created, not stored")
			continue
		}
		if why := injectedOnce(p, have); why != "" {
			bad = append(bad, p.Name+": "+why)
		}
	}
	if len(pods.Items) != len(created) {
		t.Errorf("%d pods stored, %d creates succeeded", len(pods.Items), len(created))
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d pods not injected exactly once:\n%s", len(bad), len(created), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

// injectedOnce says what is wrong with p's injection, "" if nothing: FSM's
// mark alone, or ours alone with the sidecar, fsm-init and the bootstrap
// Secret (by name in secrets).
func injectedOnce(p *corev1.Pod, secrets map[string]bool) string {
	sidecar := findContainer(p.Spec.Containers, "sidecar") != nil || findContainer(p.Spec.InitContainers, "sidecar") != nil
	switch admittedBy(p) {
	case "fsm":
		if sidecar {
			return "FSM's mark and a sidecar"
		}
	case "ours":
		secret := "sidecar-bootstrap-config-" + p.Labels[proxyUUIDLabel]
		switch {
		case !sidecar || findContainer(p.Spec.InitContainers, "fsm-init") == nil:
			return fmt.Sprintf("our uuid label but containers %v, init containers %v", containerNames(p.Spec.Containers), containerNames(p.Spec.InitContainers))
		case !secrets[secret]:
			return "no bootstrap Secret " + secret
		}
	default:
		return "admitted by " + admittedBy(p)
	}
	return ""
}

// publishSamples publishes the test codebase for every sample pod our
// injector admitted, once, until ctx ends.
func publishSamples(ctx context.Context, cs kubernetes.Interface, repo string, mainJS []byte) error {
	done := map[string]bool{}
	var errs []error
	for {
		pods, err := cs.CoreV1().Pods(switchNS).List(ctx, metav1.ListOptions{LabelSelector: sampleLabel + "," + proxyUUIDLabel})
		if err == nil {
			for i := range pods.Items {
				path := codebasePath(&pods.Items[i])
				if done[path] {
					continue
				}
				if err := publish(ctx, repo, path, mainJS); err != nil && ctx.Err() == nil {
					errs = append(errs, err)
					continue
				}
				done[path] = true
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(errs...)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkSamplesRun waits until every sample pod runs under the kubelet: phase
// Running, every container started and running, every init container
// (fsm-init in ours) exited 0.
func checkSamplesRun(t *testing.T, c *node.Cluster) {
	var byFSM, byOurs int
	start := time.Now()
	c.WaitFor(t, "every sample pod Running with its containers started", 3*time.Minute, func(ctx context.Context) error {
		pods, err := c.Clientset.CoreV1().Pods(switchNS).List(ctx, metav1.ListOptions{LabelSelector: sampleLabel})
		if err != nil {
			return err
		}
		byFSM, byOurs = 0, 0
		var waiting []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if why := notRunning(p); why != "" {
				waiting = append(waiting, fmt.Sprintf("[%s %s]", p.Name, why))
				continue
			}
			switch admittedBy(p) {
			case "fsm":
				byFSM++
			case "ours":
				byOurs++
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("%d of %d sample pods not running: %s", len(waiting), len(pods.Items), strings.Join(waiting[:min(len(waiting), 5)], " "))
		}
		return nil
	})
	t.Logf("sample pods running under the kubelet: %d admitted by FSM (app only), %d by ours (fsm-init, Pipy sidecar, app); all Running %s after this check began",
		byFSM, byOurs, time.Since(start).Round(100*time.Millisecond))
	if byFSM == 0 || byOurs == 0 {
		t.Errorf("sample pods: %d by FSM, %d by ours running; want both injectors' pods", byFSM, byOurs)
	}
}

// notRunning says why p is not running with every container started, ""
// when it is.
func notRunning(p *corev1.Pod) string {
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Sprintf("phase %s: %s", p.Status.Phase, podReasons(p))
	}
	for _, st := range p.Status.InitContainerStatuses {
		native := findContainer(p.Spec.InitContainers, st.Name)
		if native != nil && native.RestartPolicy != nil && *native.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			if st.State.Running == nil || st.Started == nil || !*st.Started {
				return fmt.Sprintf("native sidecar %s not started", st.Name)
			}
			continue
		}
		if tm := st.State.Terminated; tm == nil || tm.ExitCode != 0 {
			return fmt.Sprintf("init container %s: %+v", st.Name, st.State)
		}
	}
	if len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return fmt.Sprintf("%d container statuses for %d containers", len(p.Status.ContainerStatuses), len(p.Spec.Containers))
	}
	for _, st := range p.Status.ContainerStatuses {
		if st.State.Running == nil || st.Started == nil || !*st.Started {
			return fmt.Sprintf("container %s not started: %s", st.Name, podReasons(p))
		}
	}
	return ""
}

// checkNodeHandedBack: after the uninstall, fsm-webhook-fsm is as FSM's
// injector wrote it on its restart (its Service and path, the root as
// caBundle) and the Services select FSM's pods.
func checkNodeHandedBack(ctx context.Context, t *testing.T, cs kubernetes.Interface, rootPEM []byte) {
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, fsmWebhookCfg, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s after the hand-back: %v", fsmWebhookCfg, err)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%s has %d webhooks, want FSM's one", fsmWebhookCfg, len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	if svc := w.ClientConfig.Service; w.Name != "fsm-inject.k8s.io" || svc == nil || svc.Name != "fsm-injector" || ptr.Deref(svc.Port, 0) != 9090 ||
		ptr.Deref(svc.Path, "") != "/mutate-pod-creation" || !bytes.Equal(w.ClientConfig.CABundle, rootPEM) {
		t.Errorf("%s webhook %s %+v: want FSM's fsm-inject.k8s.io on fsm-injector:9090/mutate-pod-creation with the root", fsmWebhookCfg, w.Name, w.ClientConfig.Service)
	}
	for svc, app := range map[string]string{"fsm-injector": "fsm-injector", "fsm-validator": "fsm-controller"} {
		s, err := cs.CoreV1().Services(chartNS).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Service %s after the hand-back: %v", svc, err)
			continue
		}
		if !maps.Equal(s.Spec.Selector, map[string]string{"app": app}) {
			t.Errorf("Service %s selector %v, want FSM's app=%s", svc, s.Spec.Selector, app)
		}
	}
}

func TestLostInFSMStop(t *testing.T) {
	began := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ended := began.Add(time.Second)
	const closed = `Internal error occurred: failed calling webhook "fsm-inject.k8s.io": failed to call webhook: Post "https://fsm-injector.fsm-system.svc:9090/mutate-pod-creation?timeout=20s": EOF`
	for _, tc := range []struct {
		name string
		msg  string
		at   time.Time
		want bool
	}{
		{"connection lost during the stop", closed, began.Add(500 * time.Millisecond), true},
		{"in flight when the stop began", closed, began.Add(-5 * time.Second), true},
		{"after the pod was gone", closed, ended.Add(time.Millisecond), false},
		{"long before the stop", closed, began.Add(-31 * time.Second), false},
		{"refused: no endpoint", `failed calling webhook "fsm-inject.k8s.io": dial tcp 10.0.0.1:9090: connect: connection refused`, began, false},
		{"untrusted certificate", `failed calling webhook "fsm-inject.k8s.io": tls: failed to verify certificate: x509: certificate signed by unknown authority`, began, false},
		{"another webhook's lost connection", `failed calling webhook "validate.example.com": EOF`, began, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lostInFSMStop(tc.msg, tc.at, began, ended); got != tc.want {
				t.Errorf("lostInFSMStop = %v, want %v", got, tc.want)
			}
		})
	}
}
