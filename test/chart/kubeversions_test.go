package chart_test

import (
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestOldestKubernetes: the chart's declared floor (Chart.yaml kubeVersion,
// README "Kubernetes 1.27 or later") holds. Helm refuses 1.26 naming the
// constraint, and everything rendered for 1.27, with every optional object
// on, is of an API version 1.27 serves and uses no field that only later
// releases know or keep by default: the fields below are the ones a
// template would reach for, each with the release that made it usable
// without a feature gate. matchConditions (1.28 by default) is rendered
// on purpose: 1.27 drops it, as the README says.
func TestOldestKubernetes(t *testing.T) {
	const values = `
fsm:
  webhooks:
    networkPolicy: {enabled: true, apiServerCIDRs: [10.0.0.0/28]}
    monitoring:
      serviceMonitor: {enabled: true}
      prometheusRule: {enabled: true}
      grafanaDashboard: {enabled: true}
`
	if _, err := charttest.RenderFor("v1.26.15", ns, mustValues(t, values)); err == nil ||
		!strings.Contains(err.Error(), "chart requires kubeVersion: >=1.27.0-0 which is incompatible with Kubernetes v1.26.15") {
		t.Fatalf("rendered for Kubernetes 1.26 (err %v), want Helm's kubeVersion refusal", err)
	}
	r, err := charttest.RenderFor("v1.27.0", ns, mustValues(t, values))
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{ // on 1.27, and the CRDs the objects need
		"v1": true, "apps/v1": true, "batch/v1": true, "policy/v1": true, "rbac.authorization.k8s.io/v1": true,
		"admissionregistration.k8s.io/v1": true, "networking.k8s.io/v1": true, "apiextensions.k8s.io/v1": true,
		"config.flomesh.io/v1alpha3": true, "monitoring.coreos.com/v1": true,
	}
	later := map[string]string{ // field: the first release using it by default
		"sleep":                    "1.30 (PodLifecycleSleepAction)",
		"restartPolicy":            "1.29 on a container (SidecarContainers)",
		"resizePolicy":             "1.33 (InPlacePodVerticalScaling)",
		"hostUsers":                "1.33 (UserNamespacesSupport)",
		"appArmorProfile":          "1.30",
		"trafficDistribution":      "1.31 (ServiceTrafficDistribution)",
		"podReplacementPolicy":     "1.29",
		"backoffLimitPerIndex":     "1.29",
		"managedBy":                "1.32",
		"successPolicy":            "1.31",
		"selectableFields":         "1.31",
		"supplementalGroupsPolicy": "1.33",
		"stopSignal":               "1.33 alpha",
	}
	for _, o := range r.All() {
		if !served[o.GetAPIVersion()] {
			t.Errorf("%s %s: apiVersion %s is not served by Kubernetes 1.27", o.GetKind(), o.GetName(), o.GetAPIVersion())
		}
		walkKeys(o.Object, "", func(path, key string) {
			if v, ok := later[key]; ok && (key != "restartPolicy" || !strings.HasSuffix(path, ".spec.template.spec")) {
				t.Errorf("%s %s: field %s%s needs Kubernetes %s", o.GetKind(), o.GetName(), path, "."+key, v)
			}
		})
		if strings.Contains(o.GetKind(), "ValidatingAdmissionPolicy") {
			t.Errorf("%s %s rendered for Kubernetes 1.27", o.GetKind(), o.GetName())
		}
	}
}

// walkKeys calls f with every map key of v and the path to its map.
func walkKeys(v any, path string, f func(path, key string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			f(path, k)
			walkKeys(e, path+"."+k, f)
		}
	case []any:
		for _, e := range v {
			walkKeys(e, path+"[]", f)
		}
	}
}
