package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestEveryPodCarriesPodLabels: a site policy requiring a label or an
// annotation on every pod (Kyverno's require-labels, a Gatekeeper
// K8sRequiredLabels) is met through fsm.webhooks.podLabels and
// podAnnotations, FSM's fsm.injector.podLabels merged in. The hook Jobs'
// pods carried none of them: their pods were refused, and `helm upgrade`
// (crd-upgrade) or `helm uninstall` (the pre-delete hook) failed after
// Helm's timeout. A chart label is never overridden (the hook keeps its own
// `app`).
func TestEveryPodCarriesPodLabels(t *testing.T) {
	r := mustRender(t, `
fsm:
  injector: {podLabels: {team: mesh}}
  webhooks:
    podLabels: {cost-center: "42", app: not-ours}
    podAnnotations: {policy.example.com/owner: platform}
`)
	want := map[string]string{"cost-center": "42", "team": "mesh"}
	pods := 0
	for _, o := range r.All() {
		if o.GetKind() != "Deployment" && o.GetKind() != "Job" {
			continue
		}
		pods++
		labels := nested(t, o, "spec", "template", "metadata", "labels").(map[string]any)
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s %s: pod label %s=%v, want %s", o.GetKind(), o.GetName(), k, labels[k], v)
			}
		}
		if labels["app"] == "not-ours" {
			t.Errorf("%s %s: pod label app overridden by podLabels", o.GetKind(), o.GetName())
		}
		annotations, _ := nestedOrNil(o, "spec", "template", "metadata", "annotations").(map[string]any)
		if annotations["policy.example.com/owner"] != "platform" {
			t.Errorf("%s %s: pod annotations %v, want policy.example.com/owner=platform", o.GetKind(), o.GetName(), annotations)
		}
	}
	// The servers, the pre-upgrade and the pre-delete hook.
	if pods != 3 {
		t.Errorf("%d pod templates rendered, want 3", pods)
	}
}

func nestedOrNil(o interface{ UnstructuredContent() map[string]any }, path ...string) any {
	var cur any = o.UnstructuredContent()
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// TestREADMEEgressExampleSelectsEveryPod: the chart's NetworkPolicy is
// ingress only, and the README's example egress policy for a namespace
// denying egress by default must select every pod the chart creates (the
// hooks call the kube-apiserver too: unselected, helm upgrade and uninstall
// fail there) and let the servers reach their own pods on 9443 (the
// converter's handshake through fsm-bootstrap).
func TestREADMEEgressExampleSelectsEveryPod(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(charttest.Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	for _, block := range strings.Split(string(readme), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "kind: NetworkPolicy") && strings.Contains(block, "Egress") {
			if err := yaml.UnmarshalStrict([]byte(block), &np); err != nil {
				t.Fatalf("README's egress example: %v", err)
			}
		}
	}
	if np.Name == "" {
		t.Fatal("README has no example egress NetworkPolicy")
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeEgress {
		t.Errorf("example policyTypes %v, want [Egress]", np.Spec.PolicyTypes)
	}
	selects := func(s *metav1.LabelSelector, l map[string]string) bool {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel.Matches(labels.Set(l))
	}
	reachesServers := false
	r := mustRender(t, "")
	pods := 0
	for _, o := range r.All() {
		if o.GetKind() != "Deployment" && o.GetKind() != "Job" {
			continue
		}
		pods++
		l, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
		if !selects(&np.Spec.PodSelector, l) {
			t.Errorf("example egress policy does not select the pods of %s %s (%v)", o.GetKind(), o.GetName(), l)
		}
		if o.GetKind() != "Deployment" {
			continue
		}
		for _, rule := range np.Spec.Egress {
			for _, to := range rule.To {
				if to.PodSelector != nil && to.NamespaceSelector == nil && selects(to.PodSelector, l) &&
					len(rule.Ports) == 1 && rule.Ports[0].Port.IntValue() == 9443 {
					reachesServers = true
				}
			}
		}
	}
	if pods != 3 {
		t.Errorf("%d pod templates rendered, want 3", pods)
	}
	if !reachesServers {
		t.Error("example egress policy lets the servers reach no server pod on 9443")
	}
}
