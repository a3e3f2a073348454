// Package chart_test checks the fsm-webhooks Helm chart without a cluster:
// lint, what it renders for each certificate provider, and the values it
// rejects. Installation on a real apiserver is in test/chart/install.
package chart_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

const ns = "fsm-system"

func mustValues(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := charttest.Values(doc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustRender(t *testing.T, values string) *charttest.Rendered {
	t.Helper()
	r, err := charttest.Render(ns, mustValues(t, values))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

func mustFind(t *testing.T, r *charttest.Rendered, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := r.Find(kind, name)
	if o == nil {
		t.Fatalf("%s %q not rendered", kind, name)
	}
	return o
}

func nested(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !found {
		t.Fatalf("%s %s: field %s missing (err %v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	return v
}

// container returns the first container of a Deployment or Job.
func container(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs := nested(t, o, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("%s %s: %d containers, want 1", o.GetKind(), o.GetName(), len(cs))
	}
	return cs[0].(map[string]any)
}

func args(t *testing.T, o *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, a := range container(t, o)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

var providerValues = map[string]string{
	"tresor": ``,
	"vault": `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.vault.svc, port: 8201, protocol: https, role: mesh, secret: {name: vault-token, key: token}}
`,
	"vault-inline-token": `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.example, token: s.inline-token}
`,
	"vault-token-and-secret": `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.example, token: s.inline-token, secret: {name: vault-token, key: token}}
`,
	// A Vault behind a private CA: the chart mounts its CA Secret.
	"vault-private-ca": `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.vault.svc, protocol: https, secret: {name: vault-token, key: token}, caSecret: {name: vault-ca, key: ca.pem}}
`,
	// A Vault that requires client certificates: the chart mounts the
	// kubernetes.io/tls Secret cert-manager keeps renewed.
	"vault-client-cert": `
fsm:
  certificateProvider: {kind: vault}
  vault: {host: vault.vault.svc, protocol: https, namespace: admin/team-a, secret: {name: vault-token, key: token}, caSecret: {name: vault-ca}, clientCertSecret: {name: fsm-webhooks-vault-client}}
`,
	"cert-manager": `
fsm:
  certificateProvider: {kind: cert-manager}
  certmanager: {issuerName: mesh-root, issuerKind: ClusterIssuer, issuerGroup: cert-manager.io}
`,
}

func TestLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(charttest.KubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range providerValues {
		t.Run(name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = ns
			l.KubeVersion = kv
			res := l.Run([]string{charttest.Dir()}, mustValues(t, doc))
			if res.TotalChartsLinted != 1 {
				t.Fatalf("linted %d charts, want 1 (errors: %v)", res.TotalChartsLinted, res.Errors)
			}
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("helm lint --strict: %v", res.Errors)
			}
		})
	}
}

func TestRenderDefaults(t *testing.T) {
	r := mustRender(t, "")

	t.Run("deployment", func(t *testing.T) {
		d := mustFind(t, r, "Deployment", "fsm-webhooks")
		if got := d.GetNamespace(); got != ns {
			t.Errorf("namespace %q, want %q", got, ns)
		}
		if got := nested(t, d, "spec", "replicas"); got != int64(2) {
			t.Errorf("replicas %v, want 2", got)
		}
		if got := nested(t, d, "spec", "strategy", "rollingUpdate", "maxUnavailable"); got != int64(0) {
			t.Errorf("maxUnavailable %v, want 0", got)
		}
		want := []string{
			"serve", "--webhooks=injector,validator,converter", "--fsm-namespace=fsm-system", "--mesh-name=fsm",
			"--trust-domain=cluster.local", "--cluster-domain=cluster.local", "--ca-bundle-secret-name=" + fsmnames.CABundleSecretName,
			"--certificate-manager=tresor", "--service-cert-validity-duration=24h",
			"--bootstrap-cert-validity-duration=87600h", "--injector-port=9090", "--validator-port=9093",
			"--converter-port=9443", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
			"--log-level=info", "--key-pool-size=32", "--kube-api-qps=500", "--kube-api-burst=1000",
			"--controller-kube-api-qps=200", "--controller-kube-api-burst=400",
			"--bootstrap-key-algorithm=auto", "--bootstrap-secret-writer=admission", "--injector-namespace-rate=200", "--injector-namespace-burst=400",
			"--injector-max-in-flight=128", "--injector-secret-handoff-in-flight=16", "--injector-secret-handoff-budget=1s", "--tls-min-version=VersionTLS12",
			"--sidecar-image=flomesh/pipy:1.5.12",
			"--init-container-image=flomesh/fsm-sidecar-init:1.5.1",
			"--healthcheck-container-image=flomesh/fsm-healthcheck:1.5.1",
			"--fsm-container-pull-policy=IfNotPresent",
		}
		if got := args(t, d); !slices.Equal(got, want) {
			t.Errorf("args\n got %q\nwant %q", got, want)
		}
		c := container(t, d)
		if got := c["image"]; got != "flomesh/fsm-webhooks:0.1.0" {
			t.Errorf("image %v", got)
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			p, ok := c[probe].(map[string]any)
			if !ok {
				t.Errorf("%s missing", probe)
				continue
			}
			get := p["httpGet"].(map[string]any)
			if get["path"] != path || get["port"] != "health" {
				t.Errorf("%s = %v, want %s on port health", probe, get, path)
			}
		}
		if !portsHave(c, "health", 8081) || !portsHave(c, "sidecar-inject", 9090) || !portsHave(c, "validator", 9093) || !portsHave(c, "crdconversion", 9443) {
			t.Errorf("container ports %v", c["ports"])
		}
		assertRestricted(t, d)
		if _, found, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity", "podAntiAffinity"); !found {
			t.Error("no pod anti-affinity with 2 replicas")
		}
	})

	t.Run("services", func(t *testing.T) {
		for name, port := range map[string]int64{fsmnames.InjectorService: 9090, fsmnames.ValidatorService: 9093, fsmnames.ConverterService: 9443} {
			s := mustFind(t, r, "Service", name)
			ports := nested(t, s, "spec", "ports").([]any)
			if len(ports) != 1 || ports[0].(map[string]any)["port"] != port {
				t.Errorf("Service %s ports %v, want %d", name, ports, port)
			}
			// Every webhook's Service routes to Ready pods only: each is called
			// with failurePolicy Fail, and a Service publishing unready pods
			// sends the apiserver to a pod that has an IP but no listener yet
			// (image pull, start; `connection refused`, which the apiserver
			// does not retry: the write is denied) and to one that stopped
			// listening but is not yet deleted. The pod's readiness is the
			// injector's alone (the validator is ReportOnly), so the
			// validator's end-to-end probe, which goes through its Service,
			// no longer needs unready pods published.
			if got, _, _ := unstructured.NestedBool(s.Object, "spec", "publishNotReadyAddresses"); got {
				t.Errorf("Service %s publishNotReadyAddresses = true: its failurePolicy Fail webhook is sent to pods not serving", name)
			}
			sel := nested(t, s, "spec", "selector").(map[string]any)
			d := mustFind(t, r, "Deployment", "fsm-webhooks")
			podLabels := nested(t, d, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if podLabels[k] != v {
					t.Errorf("Service %s selector %s=%v does not match the pods (%v)", name, k, v, podLabels[k])
				}
			}
		}
	})

	t.Run("pdb", func(t *testing.T) {
		p := mustFind(t, r, "PodDisruptionBudget", "fsm-webhooks")
		if got := nested(t, p, "spec", "minAvailable"); got != int64(1) {
			t.Errorf("minAvailable %v", got)
		}
	})

	t.Run("mutating webhook", func(t *testing.T) {
		m := mustFind(t, r, "MutatingWebhookConfiguration", fsmnames.MutatingConfigurationName("fsm"))
		whs := nested(t, m, "webhooks").([]any)
		if len(whs) != 1 {
			t.Fatalf("%d webhooks", len(whs))
		}
		wh := whs[0].(map[string]any)
		checkWebhook(t, wh, injector.WebhookName, fsmnames.InjectorService, fsmnames.InjectorPath, 9090)
		sel := wh["namespaceSelector"].(map[string]any)
		if got := sel["matchLabels"].(map[string]any)[fsmnames.MonitoredByLabel]; got != "fsm" {
			t.Errorf("monitored-by selector %v", got)
		}
		exprs, _ := yaml.Marshal(sel["matchExpressions"])
		for _, want := range []string{fsmnames.IgnoreLabel, fsmnames.ControlPlaneLabel, "kubernetes.io/metadata.name", "- fsm-system"} {
			if !strings.Contains(string(exprs), want) {
				t.Errorf("namespaceSelector lacks %q:\n%s", want, exprs)
			}
		}
		if got := m.GetLabels()["app.kubernetes.io/instance"]; got != "fsm" {
			t.Errorf("instance label %q", got)
		}
		// Pods and FSM's VirtualMachines, as FSM v1.5.1 routes them to its
		// injector (TestConfigurationsMatchServers compares them exactly).
		wantRules := []any{
			map[string]any{"operations": []any{"CREATE"}, "apiGroups": []any{""}, "apiVersions": []any{"v1"}, "resources": []any{"pods"}},
			map[string]any{"operations": []any{"CREATE"}, "apiGroups": []any{"machine.flomesh.io"}, "apiVersions": []any{"v1alpha1"}, "resources": []any{"virtualmachines"}},
		}
		if got := wh["rules"]; !reflect.DeepEqual(got, wantRules) {
			t.Errorf("rules %v, want %v", got, wantRules)
		}
		if got := wh["matchPolicy"]; got != "Exact" {
			t.Errorf("matchPolicy %v, want Exact", got)
		}
	})

	t.Run("validating webhook", func(t *testing.T) {
		v := mustFind(t, r, "ValidatingWebhookConfiguration", fsmnames.ValidatingConfigurationName("fsm"))
		whs := nested(t, v, "webhooks").([]any)
		if len(whs) != 2 {
			t.Fatalf("%d webhooks, want the policy and the MeshConfig webhook", len(whs))
		}
		for i, c := range []struct {
			name      string
			resources []string
			selector  []string
		}{
			{validator.PolicyWebhookName, []string{"ingressbackends", "accesscontrols", "egresses", "upstreamtrafficsettings", "egressgateways", "accesscerts", "plugins", "traffictargets"},
				[]string{fsmnames.MonitoredByLabel + ": fsm", fsmnames.IgnoreLabel, fsmnames.ControlPlaneLabel, "operator: NotIn", "- fsm-system"}},
			{validator.MeshConfigWebhookName, []string{fsmnames.MeshConfigResource, "DELETE"}, []string{"kubernetes.io/metadata.name", "operator: In", "- fsm-system"}},
		} {
			wh := whs[i].(map[string]any)
			checkWebhook(t, wh, c.name, fsmnames.ValidatorService, fsmnames.ValidatorPath, 9093)
			rules, _ := yaml.Marshal(wh["rules"])
			for _, want := range c.resources {
				if !strings.Contains(string(rules), want) {
					t.Errorf("%s rules lack %s", c.name, want)
				}
			}
			sel, _ := yaml.Marshal(wh["namespaceSelector"])
			for _, want := range c.selector {
				if !strings.Contains(string(sel), want) {
					t.Errorf("%s namespaceSelector lacks %q:\n%s", c.name, want, sel)
				}
			}
		}
	})

	t.Run("meshconfig is a pre-install hook", func(t *testing.T) {
		mc := mustFind(t, r, "MeshConfig", fsmnames.MeshConfigName)
		if slices.ContainsFunc(r.Objects, func(o *unstructured.Unstructured) bool { return o.GetKind() == "MeshConfig" }) {
			t.Error("MeshConfig in the manifest: it would be created after the validating webhook, which cannot answer yet")
		}
		if got := mc.GetAnnotations()["helm.sh/hook"]; got != "pre-install" {
			t.Errorf("helm.sh/hook %q, want pre-install", got)
		}
		if mc.GetNamespace() != ns {
			t.Errorf("namespace %q", mc.GetNamespace())
		}
	})

	t.Run("uninstall hook", func(t *testing.T) {
		j := mustFind(t, r, "Job", "fsm-webhooks-uninstall")
		if got := j.GetAnnotations()["helm.sh/hook"]; got != "pre-delete" {
			t.Errorf("Job hook %q", got)
		}
		a := args(t, j)
		for _, want := range []string{"uninstall-hook", "--fsm-namespace=fsm-system", "--mesh-name=fsm", "--deployment=fsm-webhooks", "--mesh-config-name=" + fsmnames.MeshConfigName} {
			if !slices.Contains(a, want) {
				t.Errorf("hook args %q lack %q", a, want)
			}
		}
		assertRestricted(t, j)
		// Its RBAC must exist before the Job runs and only while it runs.
		for _, h := range r.Hooks {
			// The pre-delete hook's objects; crd-upgrade's: TestCRDUpgradeHook.
			if h.GetKind() == "Job" || !strings.HasPrefix(h.GetName(), "fsm-webhooks-uninstall") {
				continue
			}
			if h.GetAnnotations()["helm.sh/hook"] != "pre-delete" || h.GetAnnotations()["helm.sh/hook-weight"] != "-10" ||
				!strings.Contains(h.GetAnnotations()["helm.sh/hook-delete-policy"], "hook-succeeded") {
				t.Errorf("%s %s: annotations %v", h.GetKind(), h.GetName(), h.GetAnnotations())
			}
		}
	})

	t.Run("no Secret is rendered with tresor", func(t *testing.T) {
		for _, o := range r.All() {
			if o.GetKind() == "Secret" {
				t.Errorf("Secret %s rendered", o.GetName())
			}
		}
	})
}

func portsHave(c map[string]any, name string, port int64) bool {
	for _, p := range c["ports"].([]any) {
		m := p.(map[string]any)
		if m["name"] == name && m["containerPort"] == port {
			return true
		}
	}
	return false
}

func checkWebhook(t *testing.T, wh map[string]any, name, svc, path string, port int64) {
	t.Helper()
	if wh["name"] != name {
		t.Errorf("webhook name %v, want %s", wh["name"], name)
	}
	cc := wh["clientConfig"].(map[string]any)
	// caBundle belongs to the servers: a rendered one (even empty) would make
	// Helm and GitOps tools own it and fight the servers forever.
	if _, ok := cc["caBundle"]; ok {
		t.Errorf("%s: caBundle rendered", name)
	}
	s := cc["service"].(map[string]any)
	if s["name"] != svc || s["namespace"] != ns || s["path"] != path || s["port"] != port {
		t.Errorf("%s: service %v, want %s/%s:%d%s", name, s, ns, svc, port, path)
	}
	for k, want := range map[string]any{"failurePolicy": "Fail", "sideEffects": "NoneOnDryRun", "matchPolicy": "Exact", "timeoutSeconds": int64(20)} {
		if wh[k] != want {
			t.Errorf("%s: %s = %v, want %v", name, k, wh[k], want)
		}
	}
	if got := wh["admissionReviewVersions"].([]any); len(got) != 1 || got[0] != "v1" {
		t.Errorf("%s: admissionReviewVersions %v", name, got)
	}
}

// assertRestricted checks the pod meets the restricted Pod Security Standard.
func assertRestricted(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	pod := nested(t, o, "spec", "template", "spec").(map[string]any)
	psc := pod["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true || psc["seccompProfile"].(map[string]any)["type"] != "RuntimeDefault" {
		t.Errorf("%s pod securityContext %v", o.GetName(), psc)
	}
	sc := container(t, o)["securityContext"].(map[string]any)
	if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true || sc["runAsNonRoot"] != true {
		t.Errorf("%s container securityContext %v", o.GetName(), sc)
	}
	if drop := sc["capabilities"].(map[string]any)["drop"].([]any); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("%s capabilities drop %v", o.GetName(), drop)
	}
	if sc["seccompProfile"].(map[string]any)["type"] != "RuntimeDefault" {
		t.Errorf("%s container seccompProfile %v", o.GetName(), sc["seccompProfile"])
	}
}

func TestRenderProviders(t *testing.T) {
	tests := []struct {
		name       string
		values     string
		wantArgs   []string
		absentArgs []string
		// certificaterequests granted in the fsm namespace.
		wantCertRequests bool
		wantTokenSecret  bool
	}{
		{
			name:       "tresor",
			values:     providerValues["tresor"],
			wantArgs:   []string{"--certificate-manager=tresor"},
			absentArgs: []string{"--vault-host", "--cert-manager-issuer-name"},
		},
		{
			name:   "vault with token Secret",
			values: providerValues["vault"],
			wantArgs: []string{
				"--certificate-manager=vault", "--vault-host=vault.vault.svc", "--vault-port=8201", "--vault-protocol=https",
				"--vault-role=mesh", "--vault-token-secret-name=vault-token", "--vault-token-secret-key=token",
			},
			absentArgs: []string{"--vault-token=", "--cert-manager-issuer-name", "--vault-ca-file", "--vault-namespace"},
		},
		{
			name:   "vault behind a private CA",
			values: providerValues["vault-private-ca"],
			wantArgs: []string{
				"--certificate-manager=vault", "--vault-protocol=https", "--vault-token-secret-name=vault-token",
				"--vault-ca-file=/etc/fsm-webhooks/vault-ca/ca.crt",
			},
			absentArgs: []string{"--vault-client-cert-file", "--vault-client-key-file"},
		},
		{
			name:   "vault requiring a client certificate",
			values: providerValues["vault-client-cert"],
			wantArgs: []string{
				"--vault-protocol=https", "--vault-ca-file=/etc/fsm-webhooks/vault-ca/ca.crt",
				"--vault-client-cert-file=/etc/fsm-webhooks/vault-client-cert/tls.crt",
				"--vault-client-key-file=/etc/fsm-webhooks/vault-client-cert/tls.key",
				"--vault-namespace=admin/team-a",
			},
		},
		{
			name:            "vault with inline token",
			values:          providerValues["vault-inline-token"],
			wantArgs:        []string{"--vault-host=vault.example", "--vault-token-secret-name=fsm-vault-token", "--vault-token-secret-key=token"},
			absentArgs:      []string{"--vault-token="},
			wantTokenSecret: true,
		},
		{
			// FSM reads the Secret only when no token is given.
			name:            "vault with a token and a token Secret: the token wins",
			values:          providerValues["vault-token-and-secret"],
			wantArgs:        []string{"--vault-token-secret-name=fsm-vault-token", "--vault-token-secret-key=token"},
			absentArgs:      []string{"--vault-token-secret-name=vault-token"},
			wantTokenSecret: true,
		},
		{
			name:   "cert-manager",
			values: providerValues["cert-manager"],
			wantArgs: []string{
				"--certificate-manager=cert-manager", "--cert-manager-issuer-name=mesh-root",
				"--cert-manager-issuer-kind=ClusterIssuer", "--cert-manager-issuer-group=cert-manager.io",
			},
			absentArgs:       []string{"--vault-host"},
			wantCertRequests: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			a := args(t, mustFind(t, r, "Deployment", "fsm-webhooks"))
			for _, w := range tc.wantArgs {
				if !slices.Contains(a, w) {
					t.Errorf("args lack %q: %q", w, a)
				}
			}
			for _, bad := range tc.absentArgs {
				if slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, bad) }) {
					t.Errorf("args carry %q: %q", bad, a)
				}
			}
			if strings.Contains(r.Manifest, "s.inline-token") {
				t.Error("the Vault token appears in clear text in the manifest")
			}
			role := mustFind(t, r, "Role", "fsm-webhooks")
			rules, _ := yaml.Marshal(nested(t, role, "rules"))
			if got := strings.Contains(string(rules), "certificaterequests"); got != tc.wantCertRequests {
				t.Errorf("certificaterequests granted = %v, want %v", got, tc.wantCertRequests)
			}
			sec := r.Find("Secret", "fsm-vault-token")
			if (sec != nil) != tc.wantTokenSecret {
				t.Errorf("Secret fsm-vault-token rendered = %v, want %v", sec != nil, tc.wantTokenSecret)
			}
		})
	}
}

func TestRenderReplicas(t *testing.T) {
	r := mustRender(t, "fsm: {webhooks: {replicaCount: 1}}")
	if r.Find("PodDisruptionBudget", "fsm-webhooks") != nil {
		t.Error("PodDisruptionBudget with 1 replica blocks every node drain")
	}
	d := mustFind(t, r, "Deployment", "fsm-webhooks")
	if _, found, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity"); found {
		t.Error("affinity rendered with 1 replica")
	}
}

func TestRenderStrictPolicyValidation(t *testing.T) {
	// Off by default (TestRenderDefaults lists every argument); on, serve
	// gets the flag.
	d := mustFind(t, mustRender(t, "fsm: {webhooks: {strictPolicyValidation: true}}"), "Deployment", "fsm-webhooks")
	if got := args(t, d); !slices.Contains(got, "--strict-policy-validation") {
		t.Errorf("args %q lack --strict-policy-validation", got)
	}
}

func TestRenderMeshNameAndNamespace(t *testing.T) {
	r := mustRender(t, "fsm: {meshName: blue, webhook: {failurePolicy: Ignore}}")
	m := mustFind(t, r, "MutatingWebhookConfiguration", fsmnames.MutatingConfigurationName("blue"))
	wh := nested(t, m, "webhooks").([]any)[0].(map[string]any)
	if wh["failurePolicy"] != "Ignore" {
		t.Errorf("failurePolicy %v", wh["failurePolicy"])
	}
	// Both validator entries take the same values.
	for _, vwh := range nested(t, mustFind(t, r, "ValidatingWebhookConfiguration", fsmnames.ValidatingConfigurationName("blue")), "webhooks").([]any) {
		vwh := vwh.(map[string]any)
		if vwh["failurePolicy"] != "Ignore" {
			t.Errorf("%s failurePolicy %v", vwh["name"], vwh["failurePolicy"])
		}
	}
	cr := mustFind(t, r, "ClusterRole", "fsm-webhooks-blue")
	rules, _ := yaml.Marshal(nested(t, cr, "rules"))
	for _, want := range []string{fsmnames.MutatingConfigurationName("blue"), fsmnames.ValidatingConfigurationName("blue"), fsmnames.MeshConfigCRDName} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("ClusterRole lacks resourceName %s", want)
		}
	}
}

// TestRBACLeastPrivilege: no wildcard anywhere, and every grant on cluster
// objects the chart owns is bound to their names.
func TestRBACLeastPrivilege(t *testing.T) {
	for name, doc := range providerValues {
		r := mustRender(t, doc)
		for _, o := range r.All() {
			if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
				continue
			}
			for _, ru := range nested(t, o, "rules").([]any) {
				rule := ru.(map[string]any)
				for _, key := range []string{"verbs", "resources", "apiGroups", "resourceNames"} {
					list, _ := rule[key].([]any)
					if slices.Contains(list, any("*")) {
						t.Errorf("%s: %s %s: wildcard in %s", name, o.GetKind(), o.GetName(), key)
					}
				}
				res, _ := rule["resources"].([]any)
				for _, owned := range []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations", "customresourcedefinitions"} {
					if slices.Contains(res, any(owned)) && len(rule["resourceNames"].([]any)) == 0 {
						t.Errorf("%s: %s %s: %s not restricted by name", name, o.GetKind(), o.GetName(), owned)
					}
				}
				if verbs, _ := rule["verbs"].([]any); slices.Contains(res, any("mutatingwebhookconfigurations")) && slices.Contains(verbs, any("create")) {
					t.Errorf("%s: servers may create webhook configurations the chart owns", name)
				}
			}
		}
	}
}

// The CRD ships without a conversion stanza: a webhook conversion with an
// empty caBundle would break reads of old versions until the converter runs.
func TestCRDHasNoConversionWebhook(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(charttest.Dir(), "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in crds/ (err %v)", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := map[string]any{}
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		conv, found, _ := unstructured.NestedMap(crd, "spec", "conversion")
		if found && conv["strategy"] != "None" {
			t.Errorf("%s: spec.conversion %v rendered by the chart", filepath.Base(f), conv)
		}
	}
}

// TestDefaultsAreTheBinarys: the chart's defaults for the injector's load
// settings are serve's own flag defaults, so installing with the chart and
// running the binary bare behave alike (and the README's figures, taken with
// serve's defaults, are what the chart installs).
func TestDefaultsAreTheBinarys(t *testing.T) {
	r, err := charttest.Render(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	dep := r.Find("Deployment", "fsm-webhooks")
	if dep == nil {
		t.Fatal("no Deployment fsm-webhooks")
	}
	got := map[string]string{}
	for _, a := range args(t, dep) {
		if k, v, ok := strings.Cut(a, "="); ok {
			got[k] = v
		}
	}
	for flag, want := range map[string]string{
		"--injector-max-in-flight":            strconv.Itoa(injector.DefaultMaxInFlight),
		"--injector-secret-handoff-in-flight": strconv.Itoa(injector.DefaultHandoffInFlight),
		"--injector-secret-handoff-budget":    injector.DefaultHandoffBudget.String(),
		"--injector-namespace-rate":           strconv.FormatFloat(injector.DefaultNamespaceRate, 'f', -1, 64),
		"--injector-namespace-burst":          strconv.Itoa(injector.DefaultNamespaceBurst),
	} {
		if got[flag] != want {
			t.Errorf("chart renders %s=%q, serve's default is %q", flag, got[flag], want)
		}
	}
	// Left to the binary, whose default the README's table pins.
	if v, ok := got["--tls-cipher-suites"]; ok {
		t.Errorf("chart renders --tls-cipher-suites=%s by default; want the binary's default suites", v)
	}
}
