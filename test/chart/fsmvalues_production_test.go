package chart_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// What the chart does with FSM v1.5.1 values a platform team sets in
// production. Each case passes FSM's own values file with one value changed,
// as a switching user would (`-f fsm-values.yaml -f overrides.yaml`).

// fsmValuesWith is FSM v1.5.1's values file with override merged in.
func fsmValuesWith(t *testing.T, override string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(fsmValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	return mergeValues(t, string(raw), override)
}

// TestSchemaTakesFSMFreeFormObjects: FSM's schema declares every `affinity`
// and each `preinstall`/`cleanup` `resources` as any object, and FSM's
// templates copy them whole into the pod spec, so any Affinity or
// ResourceRequirements installs with FSM's chart. This chart ignores them but
// must accept them (the same file keeps configuring FSM's controller); it
// once closed them to the keys FSM's defaults happen to use.
func TestSchemaTakesFSMFreeFormObjects(t *testing.T) {
	for name, override := range map[string]string{
		"fsm.injector.affinity required podAntiAffinity": `
fsm:
  injector:
    affinity:
      podAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app: fsm-injector}}
`,
		"fsm.injector.affinity preferred nodeAffinity": `
fsm:
  injector:
    affinity:
      nodeAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 50
            preference: {matchExpressions: [{key: node-pool, operator: In, values: [mesh]}]}
`,
		"fsm.fsmBootstrap.affinity zone spreading": `
fsm:
  fsmBootstrap:
    affinity:
      podAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: topology.kubernetes.io/zone
            labelSelector: {matchLabels: {app: fsm-bootstrap}}
`,
		"fsm.fsmController.affinity podAffinity": `
fsm:
  fsmController:
    affinity:
      podAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 10
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: fsm-injector}}
`,
		"fsm.preinstall.resources ephemeral-storage": `
fsm:
  preinstall:
    resources:
      limits: {cpu: 500m, memory: 512M, ephemeral-storage: 1Gi}
`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := charttest.Render(ns, fsmValuesWith(t, override)); err != nil {
				t.Errorf("FSM's chart accepts this value (its schema: a free-form object), this chart refuses it:\n%v", err)
			}
		})
	}
}

// TestSidecarRegistryFallsBackToFSMImageRegistry: FSM's schema does not
// require fsm.sidecar.image.registry, and FSM's "sidecar.image" helper uses
// fsm.image.registry when it is empty, so users of a private mirror set it
// empty (or drop it) to keep one registry for all images.
func TestSidecarRegistryFallsBackToFSMImageRegistry(t *testing.T) {
	const want = "--sidecar-image=registry.example.com/flomesh/pipy:1.5.12"
	for name, override := range map[string]string{
		"empty": `
fsm:
  image: {registry: registry.example.com/flomesh}
  sidecar: {image: {registry: ""}}
`,
		"null (unset)": `
fsm:
  image: {registry: registry.example.com/flomesh}
  sidecar: {image: {registry: null}}
`,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := charttest.Render(ns, fsmValuesWith(t, override))
			if err != nil {
				t.Fatalf("FSM's chart renders %s, this chart refuses it:\n%v", want, err)
			}
			got := args(t, mustFind(t, r, "Deployment", "fsm-webhooks"))
			if !slices.Contains(got, want) {
				t.Errorf("args lack %s: %s", want, strings.Join(got, " "))
			}
		})
	}
}

// TestPriorityClassAsFSM: FSM v1.5.1's chart runs fsm-injector and
// fsm-bootstrap, the pods these servers replace, as system-node-critical (no
// value changes it): under node pressure the webhooks every meshed pod
// create waits on (failurePolicy Fail) must not be the first preempted or
// evicted. fsm.webhooks.priorityClassName "" still drops it.
func TestPriorityClassAsFSM(t *testing.T) {
	for override, want := range map[string]string{
		"{}": "system-node-critical",
		"fsm: {webhooks: {priorityClassName: \"\"}}":          "",
		"fsm: {webhooks: {priorityClassName: mesh-critical}}": "mesh-critical",
	} {
		r, err := charttest.Render(ns, fsmValuesWith(t, override))
		if err != nil {
			t.Fatal(err)
		}
		dep := mustFind(t, r, "Deployment", "fsm-webhooks")
		got, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "priorityClassName")
		if got != want {
			t.Errorf("%s: priorityClassName %q, want %q", override, got, want)
		}
	}
}

// TestOpenShiftAssignsTheUser: on OpenShift (security.openshift.io/v1
// served) the restricted-v2 SecurityContextConstraints assign the user,
// group and fsGroup from the namespace's range and refuse a pod asking for
// another, so no pod of the chart names them there (FSM's chart leaves its
// pod securityContext out on OpenShift); every pod stays restricted.
// Elsewhere they are 65532.
func TestOpenShiftAssignsTheUser(t *testing.T) {
	for _, openshift := range []bool{false, true} {
		var apis []string
		if openshift {
			apis = []string{"security.openshift.io/v1"}
		}
		r, err := charttest.RenderWithAPIs(charttest.KubeVersion, ns, fsmValuesWith(t, "{}"), apis...)
		if err != nil {
			t.Fatal(err)
		}
		pods := 0
		for _, o := range r.All() {
			psc, ok, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec", "securityContext")
			if !ok {
				continue
			}
			pods++
			assertRestricted(t, o)
			for _, k := range []string{"runAsUser", "runAsGroup", "fsGroup"} {
				if _, set := psc[k]; set == openshift {
					t.Errorf("openshift=%v: %s %s pod securityContext %s = %v", openshift, o.GetKind(), o.GetName(), k, psc[k])
				}
			}
		}
		if pods < 3 { // the Deployment and the two hook Jobs
			t.Errorf("openshift=%v: %d pod templates rendered, want the Deployment's and the hooks'", openshift, pods)
		}
	}
}
