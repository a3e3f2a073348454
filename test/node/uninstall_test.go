//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestUninstallOnNode runs `helm uninstall` with its pre-delete hook: the
// hook's Job runs as a real pod under the kubelet and does what only it does
// (the MeshConfig CRD's conversion back to None, fsm-mesh-config deleted),
// and what the release leaves behind is exactly the chart README's list;
// reads of the MeshConfig in an old version (through the converter) never
// fail while it runs.
func TestUninstallOnNode(t *testing.T) {
	ctx, c, helm := startChart(t)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	// From right after `helm install` (the CRD and fsm-mesh-config exist,
	// the servers' pods do not run yet) no read of an old version fails:
	// the converter publishes its stanza only once fsm-bootstrap lists its
	// pod as a ready endpoint (before that fix: "connection refused" until
	// kube-proxy routed to the new pods).
	installReader := startOldVersionReader(t, c.Config, chartNS, "fsm-mesh-config")
	defer installReader.stop()
	waitWebhooksReady(t, c, chartImage)
	c.WaitFor(t, "the converter to publish the MeshConfig CRD's conversion stanza", 3*time.Minute, func(ctx context.Context) error {
		if s, err := conversionStrategy(ctx, dyn); err != nil || s != string(apiextv1.WebhookConverter) {
			return fmt.Errorf("conversion %q (%v)", s, err)
		}
		return nil
	})
	crdGVR := crdResource
	// Watch the hook's pod through its life: hook-succeeded deletes the Job
	// once it is done, so its pod exists only while helm waits, and it is
	// Succeeded from the kubelet's last status write until the garbage
	// collector removes it, which a poll every 200 ms could fall between
	// on a loaded node. A watch sees every write. Not through
	// c.Clientset: its one-minute client timeout also ends a watch (see
	// TestSecretLife), and the uninstall waits out the servers' drain.
	var mu sync.Mutex
	hookPhases := map[string]string{}
	wctx, wcancel := context.WithCancel(ctx)
	wcfg := rest.CopyConfig(c.Config)
	wcfg.Timeout = 0
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	hookPods := watchLabelled(wctx, t, "uninstall hook pods", wcs.CoreV1().Pods(chartNS), "app=fsm-webhooks-uninstall", func(ev watch.Event) {
		if p, ok := ev.Object.(*corev1.Pod); ok {
			mu.Lock()
			hookPhases[p.Name] = string(p.Status.Phase)
			mu.Unlock()
		}
	})
	var wg sync.WaitGroup
	// Before the uninstall, the install has settled: an old version reads
	// through the converter (right after the servers are Ready, the
	// apiserver may not have the CRD's new caBundle yet).
	v1alpha1 := schema.GroupVersionResource{Group: "config.flomesh.io", Version: "v1alpha1", Resource: "meshconfigs"}
	c.WaitFor(t, "fsm-mesh-config to read at v1alpha1 through the converter", 3*time.Minute, func(ctx context.Context) error {
		_, err := dyn.Resource(v1alpha1).Namespace(chartNS).Get(ctx, "fsm-mesh-config", metav1.GetOptions{})
		return err
	})
	installReader.stop()
	installReads, installFailures := installReader.results()
	t.Logf("v1alpha1 reads of fsm-mesh-config from the install until the servers converted: %d, failed %d", installReads, len(installFailures))
	if len(installFailures) > 0 {
		t.Errorf("%d of %d v1alpha1 reads failed after the install, want 0:\n%s", len(installFailures), installReads, strings.Join(installFailures[:min(len(installFailures), 10)], "\n"))
	}

	// A reader of an old MeshConfig version through the uninstall: each
	// read needs the converter until the hook sets the conversion to None,
	// which it does while the servers drain, so no read may fail.
	var reads, readFailures int
	var firstReadFailure error
	// timeline: the failed reads among the changes of the stanza and of the
	// servers' pods, printed when a read failed.
	var timeline []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := ""
		for wctx.Err() == nil {
			now := ""
			if crd, err := dyn.Resource(crdGVR).Get(wctx, "meshconfigs.config.flomesh.io", metav1.GetOptions{}); err == nil {
				st, _, _ := unstructured.NestedString(crd.Object, "spec", "conversion", "strategy")
				now = "conversion " + st
			}
			if pods, err := c.Clientset.CoreV1().Pods(chartNS).List(wctx, metav1.ListOptions{LabelSelector: "app=fsm-webhooks"}); err == nil {
				terminating := 0
				for _, p := range pods.Items {
					if p.DeletionTimestamp != nil {
						terminating++
					}
				}
				now += fmt.Sprintf(", %d server pods (%d terminating)", len(pods.Items), terminating)
			}
			if now != last {
				mu.Lock()
				timeline = append(timeline, time.Now().Format("15:04:05.000")+" "+now)
				mu.Unlock()
				last = now
			}
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for wctx.Err() == nil {
			_, err := dyn.Resource(v1alpha1).Namespace(chartNS).Get(wctx, "fsm-mesh-config", metav1.GetOptions{})
			mu.Lock()
			reads++
			if err != nil && !apierrors.IsNotFound(err) && wctx.Err() == nil {
				readFailures++
				timeline = append(timeline, fmt.Sprintf("%s read failed: %v", time.Now().Format("15:04:05.000"), err))
				if firstReadFailure == nil {
					firstReadFailure = err
				}
			}
			mu.Unlock()
			select {
			case <-wctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	err = helm.Uninstall(true)
	hookWatchEnd := hookPods.ended() // before wcancel ends it
	wcancel()
	wg.Wait()
	t.Logf("v1alpha1 reads of fsm-mesh-config during the uninstall: %d, failed %d", reads, readFailures)
	if readFailures != 0 {
		t.Errorf("%d of %d v1alpha1 reads failed during the uninstall, want 0; first: %v\n%s", readFailures, reads, firstReadFailure, strings.Join(timeline, "\n"))
	}
	if err != nil {
		t.Fatalf("%v (logs in %s)", err, c.LogDir)
	}
	mu.Lock()
	phases := maps.Clone(hookPhases)
	mu.Unlock()
	t.Logf("helm uninstall with its hook took %s; hook pods seen: %v", time.Since(start).Round(100*time.Millisecond), phases)
	succeeded := false
	for _, phase := range phases {
		succeeded = succeeded || phase == string(corev1.PodSucceeded)
	}
	if !succeeded {
		t.Errorf("no uninstall hook pod seen Succeeded: %v (watch: %v)", phases, hookWatchEnd)
	}

	t.Run("the hook's own work is done", func(t *testing.T) {
		crd, err := dyn.Resource(crdGVR).Get(ctx, "meshconfigs.config.flomesh.io", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the CRD outlives the release: %v", err)
		}
		if s, _, _ := unstructured.NestedString(crd.Object, "spec", "conversion", "strategy"); s != string(apiextv1.NoneConverter) {
			t.Errorf("CRD conversion strategy %q, want None", s)
		}
		mcGVR := schema.GroupVersionResource{Group: "config.flomesh.io", Version: "v1alpha3", Resource: "meshconfigs"}
		if _, err := dyn.Resource(mcGVR).Namespace(chartNS).Get(ctx, "fsm-mesh-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("meshconfig fsm-mesh-config: %v, want NotFound", err)
		}
	})

	t.Run("only what the chart README lists is left", func(t *testing.T) {
		// The chart README's "Left behind on purpose" Secrets; the
		// namespace's default ServiceAccount and kube-root-ca.crt are
		// Kubernetes'.
		wantSecrets := []string{"crd-converter-cert-secret", "fsm-ca-bundle", "mutating-webhook-cert-secret", "validating-webhook-cert-secret"}
		c.WaitFor(t, "the release's namespaced objects to be gone", 2*time.Minute, func(ctx context.Context) error {
			left, err := leftInNamespace(ctx, dyn, chartNS)
			if err != nil {
				return err
			}
			want := map[string][]string{
				"secrets":         wantSecrets,
				"serviceaccounts": {"default"},
				"configmaps":      {"kube-root-ca.crt"},
			}
			for res, names := range left {
				if !slices.Equal(names, want[res]) {
					return fmt.Errorf("%s left in %s: %v, want %v (all left: %v)", res, chartNS, names, want[res], left)
				}
			}
			for res, names := range want {
				if !slices.Equal(left[res], names) {
					return fmt.Errorf("%s left in %s: %v, want %v", res, chartNS, left[res], names)
				}
			}
			return nil
		})
		// Cluster-scoped: everything labelled as this mesh's is gone, the
		// CRD excepted (Helm never deletes crds/).
		for _, gvr := range []schema.GroupVersionResource{
			{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
			{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
			{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
			{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
			{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
			{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		} {
			list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=fsm-webhooks"})
			if err != nil {
				t.Fatalf("listing %s: %v", gvr.Resource, err)
			}
			for _, o := range list.Items {
				t.Errorf("%s %s left after uninstall", gvr.Resource, o.GetName())
			}
		}
	})
}

// namespacedKinds are the kinds the chart, its hooks and its servers create
// in the fsm namespace, plus the ones Kubernetes adds.
var namespacedKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "pods"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "replicasets"},
	{Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
	{Group: "config.flomesh.io", Version: "v1alpha3", Resource: "meshconfigs"},
}

// leftInNamespace lists the sorted names of every namespacedKinds object in
// ns, by resource; resources with none are absent.
func leftInNamespace(ctx context.Context, dyn dynamic.Interface, ns string) (map[string][]string, error) {
	left := map[string][]string{}
	for _, gvr := range namespacedKinds {
		list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", gvr.Resource, ns, err)
		}
		for _, o := range list.Items {
			left[gvr.Resource] = append(left[gvr.Resource], o.GetName())
		}
		slices.Sort(left[gvr.Resource])
	}
	return left, nil
}
