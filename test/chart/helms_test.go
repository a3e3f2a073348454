package chart_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// valuesCases are the values files a user hands to `helm install -f`: the
// chart's defaults, FSM v1.5.1's values file unchanged, and FSM's file with a
// user's typical overrides.
func valuesCases(t *testing.T) map[string]map[string]any {
	t.Helper()
	overrides, err := os.ReadFile("testdata/fsm-values-typical-overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsmFile, err := os.ReadFile(fsmValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]map[string]any{
		"defaults":                     nil,
		"fsm-values-v1.5.1":            readValuesFile(t, fsmValuesFile),
		"fsm-values-typical-overrides": mustValues(t, string(overrides)),
		// FSM's keys written into the MeshConfig, and keys only FSM's
		// values.schema.json declares.
		"fsm-meshconfig-keys": mergeValues(t, string(fsmFile), `
fsm:
  enablePrivilegedInitContainer: true
  trafficInterceptionMode: NodeLevel
  outboundIPRangeInclusionList: [10.0.0.0/8]
  networkInterfaceExclusionList: [eth1, "veth+"]
  localDNSProxy: {enable: true, primaryUpstreamDNSServerIPAddr: 10.96.0.10, wildcard: {enable: true, ips: [{ipv4: 127.0.0.3, ipv6: "fd00::3"}]}}
  sidecar: {holdApplicationUntilProxyStarts: false, sidecarLogLevel: "off", resource: {limits: {cpu: "1", memory: 512M}, requests: {cpu: 100m, memory: 64M}}}
  tracing: {enable: true, address: jaeger.fsm-system.svc.cluster.local, sampledFraction: "0.2"}
  pspEnabled: false
  controllerLogLevel: warn
`),
	}
}

// TestHelmsRenderAlike: Helm 3 and Helm 4 both accept the values files
// (schema validation included) and render the same manifest and hooks from
// them, so every render test run with Helm 4 holds for Helm 3 users too.
func TestHelmsRenderAlike(t *testing.T) {
	for name, values := range valuesCases(t) {
		t.Run(name, func(t *testing.T) {
			var first *charttest.Rendered
			var firstName string
			for _, h := range charttest.Helms() {
				r, err := h.Template(ns, values)
				if err != nil {
					t.Fatalf("%s template: %v", h.Name(), err)
				}
				if r.Find("Deployment", "fsm-webhooks") == nil || r.Find("CustomResourceDefinition", "meshconfigs.config.flomesh.io") != nil {
					t.Errorf("%s: manifest lacks the Deployment or carries crds/ (len %d)", h.Name(), len(r.Objects))
				}
				if first == nil {
					first, firstName = r, h.Name()
					continue
				}
				// Objects, not text: the SDKs join documents with different
				// blank lines.
				if d := cmp.Diff(objectMaps(first.Objects), objectMaps(r.Objects)); d != "" {
					t.Errorf("manifest objects differ (-%s +%s):\n%s", firstName, h.Name(), d)
				}
				if d := cmp.Diff(objectMaps(first.Hooks), objectMaps(r.Hooks)); d != "" {
					t.Errorf("hook objects differ (-%s +%s):\n%s", firstName, h.Name(), d)
				}
				if d := cmp.Diff(first.Notes, r.Notes); d != "" {
					t.Errorf("NOTES.txt differs (-%s +%s):\n%s", firstName, h.Name(), d)
				}
			}
		})
	}
}

// TestHelmsRejectBadValues: both SDKs enforce values.schema.json and the
// chart's own checks, with a message naming the field.
func TestHelmsRejectBadValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"fsm: {injector: {replicaCont: 2}}", "replicaCont"}, // typo under an FSM key
		{"smii: {validateTrafficTarget: true}", "smii"},      // belongs to neither chart
		{"fsm: {certificateProvider: {kind: acme}}", "/fsm/certificateProvider/kind"},
		{"fsm: {crdUpgrade: {enabled: yes please}}", "/fsm/crdUpgrade/enabled"},
		{"fsm: {crdUpgrade: {timeoutSeconds: 5}}", "/fsm/crdUpgrade/timeoutSeconds"},
		{"fsm: {certificateProvider: {kind: vault}, vault: {host: v}}", "fsm.vault.token"}, // template-side check
		{"fsm: {certificateProvider: {kind: cert-manager}, certmanager: {issuerKind: clusterissuer}}", "fsm.certmanager.issuerKind"},
		{"fsm: {trafficInterceptionMode: HostLevel}", "/fsm/trafficInterceptionMode"},
		{"fsm: {networkInterfaceExclusionList: ['eth$1']}", "/fsm/networkInterfaceExclusionList/0"},
		{`fsm: {tracing: {sampledFraction: "2"}}`, "/fsm/tracing/sampledFraction"},
		{"fsm: {webhooks: {injectorNamespaceBurst: 1000000}}", "/fsm/webhooks/injectorNamespaceBurst"},
	} {
		for _, h := range charttest.Helms() {
			t.Run(h.Name()+"/"+tc.values, func(t *testing.T) {
				_, err := h.Template(ns, mustValues(t, tc.values))
				if err == nil {
					t.Fatalf("values accepted:\n%s", tc.values)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error lacks %q:\n%v", tc.want, err)
				}
			})
		}
	}
}

// TestCRDUpgradeHook: the pre-upgrade hook runs `fsm-webhooks install-crds`
// from the chart's own image, as a ServiceAccount allowed to get and patch
// exactly the CRDs the binary applies and nothing else, and its objects are
// hooks only (deleted once it succeeds). Disabled, nothing of it renders.
func TestCRDUpgradeHook(t *testing.T) {
	crds, err := chart.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var crdNames []string
	for _, c := range crds {
		crdNames = append(crdNames, c.Name)
	}
	const name = charttest.CRDUpgradeJob
	for _, h := range charttest.Helms() {
		t.Run(h.Name(), func(t *testing.T) {
			r, err := h.Template(ns, mustValues(t, "fsm: {meshName: blue, crdUpgrade: {timeoutSeconds: 300}}"))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range r.Objects {
				if strings.HasPrefix(o.GetName(), name) {
					t.Errorf("%s %s is in the manifest, not a hook", o.GetKind(), o.GetName())
				}
			}
			var hookKinds []string
			for _, o := range r.Hooks {
				if !strings.HasPrefix(o.GetName(), name) {
					continue
				}
				hookKinds = append(hookKinds, o.GetKind())
				a := o.GetAnnotations()
				// The RBAC goes when the hook fails too; the Job stays for
				// its logs.
				wantPolicy := "before-hook-creation,hook-succeeded,hook-failed"
				if o.GetKind() == "Job" {
					wantPolicy = "before-hook-creation,hook-succeeded"
				}
				if a["helm.sh/hook"] != "pre-upgrade" || a["helm.sh/hook-delete-policy"] != wantPolicy {
					t.Errorf("%s %s annotations %v", o.GetKind(), o.GetName(), a)
				}
				// RBAC first: Helm creates hooks of one event in weight order.
				wantWeight := "-20"
				if o.GetKind() == "Job" {
					wantWeight = "-10"
				}
				if a["helm.sh/hook-weight"] != wantWeight {
					t.Errorf("%s weight %q, want %s", o.GetKind(), a["helm.sh/hook-weight"], wantWeight)
				}
			}
			slices.Sort(hookKinds)
			if want := []string{"ClusterRole", "ClusterRoleBinding", "Job", "ServiceAccount"}; !slices.Equal(hookKinds, want) {
				t.Fatalf("crd-upgrade hook objects %v, want %v", hookKinds, want)
			}

			var role rbacv1.ClusterRole
			fromUnstructured(t, r.Find("ClusterRole", name+".blue"), &role)
			want := []rbacv1.PolicyRule{{
				APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"},
				ResourceNames: crdNames, Verbs: []string{"get", "patch"},
			}}
			if !reflect.DeepEqual(role.Rules, want) {
				t.Errorf("ClusterRole rules %+v, want %+v (the CRDs install-crds applies)", role.Rules, want)
			}
			var binding rbacv1.ClusterRoleBinding
			fromUnstructured(t, r.Find("ClusterRoleBinding", name+".blue"), &binding)
			if binding.RoleRef.Name != name+".blue" || len(binding.Subjects) != 1 ||
				binding.Subjects[0].Name != name || binding.Subjects[0].Namespace != ns {
				t.Errorf("ClusterRoleBinding %+v %+v", binding.RoleRef, binding.Subjects)
			}

			var job batchv1.Job
			fromUnstructured(t, r.Find("Job", name), &job)
			pod := job.Spec.Template.Spec
			if pod.ServiceAccountName != name || len(pod.Containers) != 1 {
				t.Fatalf("Job pod: serviceAccount %q, %d containers", pod.ServiceAccountName, len(pod.Containers))
			}
			var dep appsv1.Deployment
			fromUnstructured(t, r.Find("Deployment", "fsm-webhooks"), &dep)
			c := pod.Containers[0]
			if img := dep.Spec.Template.Spec.Containers[0].Image; c.Image != img {
				t.Errorf("Job image %q, want the servers' %q (the new binary embeds the new CRD)", c.Image, img)
			}
			if want := []string{"install-crds", "--timeout=300s"}; !slices.Equal(c.Args, want) {
				t.Errorf("Job args %q, want %q", c.Args, want)
			}
			if job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 360 {
				t.Errorf("activeDeadlineSeconds %v, want 360", job.Spec.ActiveDeadlineSeconds)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
				len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/tmp" {
				t.Errorf("Job container: read-only root with a writable /tmp expected, got %+v %+v", c.SecurityContext, c.VolumeMounts)
			}

			off, err := h.Template(ns, mustValues(t, "fsm: {crdUpgrade: {enabled: false}}"))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range off.All() {
				if strings.HasPrefix(o.GetName(), name) {
					t.Errorf("crdUpgrade.enabled=false still renders %s %s", o.GetKind(), o.GetName())
				}
			}
		})
	}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if u == nil {
		t.Fatalf("object for %T not rendered", into)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

// objectMaps keys objects by kind/namespace/name. The MeshConfig's
// clusterSet.uid is a fresh uuidv4 per render (as in FSM's chart): only its
// presence is compared.
func objectMaps(objs []*unstructured.Unstructured) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		o = o.DeepCopy()
		if o.GetKind() == "MeshConfig" {
			if uid, ok, _ := unstructured.NestedString(o.Object, "spec", "clusterSet", "uid"); ok {
				if _, err := uuid.Parse(uid); err == nil {
					uid = "<uuid>"
				}
				_ = unstructured.SetNestedField(o.Object, uid, "spec", "clusterSet", "uid")
			}
		}
		out[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o.Object
	}
	return out
}
