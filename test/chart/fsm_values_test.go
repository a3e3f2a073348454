package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// fsmValuesFile is FSM v1.5.1's chart values.yaml, as `helm show values` prints it.
const fsmValuesFile = "../../../shared/fsm-reference/fsm-values-v1.5.1.yaml"

func readValuesFile(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return mustValues(t, string(raw))
}

func readSchema(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(charttest.Dir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemaAcceptsFSMValues: values.schema.json declares every key path of
// FSM's values; regenerate with `go run ./hack/fsmschema` when it fails.
func TestSchemaAcceptsFSMValues(t *testing.T) {
	fsm := readValuesFile(t, fsmValuesFile)
	schema := readSchema(t)
	paths := charttest.FSMKeyPaths(fsm)
	if len(paths) < 500 {
		t.Fatalf("only %d key paths in %s: not FSM's values file?", len(paths), fsmValuesFile)
	}
	for _, p := range paths {
		if !charttest.SchemaHasPath(schema, p) {
			t.Errorf("values.schema.json lacks FSM's %s (go run ./hack/fsmschema)", p)
		}
	}
	added, err := charttest.MergeFSMKeys(schema, fsm)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) > 0 {
		t.Errorf("hack/fsmschema would add %v", added)
	}
}

func TestMergeFSMKeys(t *testing.T) {
	schema := map[string]any{
		"type": "object", "additionalProperties": false,
		"properties": map[string]any{
			"fsm": map[string]any{
				"type": "object", "additionalProperties": false,
				"properties": map[string]any{"meshName": map[string]any{"type": "string", "minLength": 1}},
			},
		},
	}
	fsm := map[string]any{"fsm": map[string]any{
		"meshName": "fsm",
		"injector": map[string]any{"replicaCount": 1.0, "podLabels": map[string]any{}},
	}}
	added, err := charttest.MergeFSMKeys(schema, fsm)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/fsm/injector"}; !reflect.DeepEqual(added, want) {
		t.Errorf("added %v, want %v", added, want)
	}
	mesh := schema["properties"].(map[string]any)["fsm"].(map[string]any)["properties"].(map[string]any)["meshName"]
	if !reflect.DeepEqual(mesh, map[string]any{"type": "string", "minLength": 1}) {
		t.Errorf("existing node changed: %v", mesh)
	}
	for path, want := range map[string]bool{
		"/fsm/injector/replicaCount":   true,
		"/fsm/injector/podLabels/team": true, // free-form map
		"/fsm/injector/replicaCont":    false,
		"/fsm/meshNam":                 false,
		"/smi":                         false,
	} {
		if got := charttest.SchemaHasPath(schema, path); got != want {
			t.Errorf("SchemaHasPath(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestFSMValuesTypos: keys belonging to neither FSM nor this chart stay errors.
func TestFSMValuesTypos(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"fsm: {injector: {replicaCont: 2}}", "replicaCont"},
		{"fsm: {fsmIngres: {enabled: true}}", "fsmIngres"},
		{"fsm: {fsmController: {autoScale: {enabel: true}}}", "enabel"},
		{"smii: {validateTrafficTarget: true}", "smii"},
		{"fsm: {featureFlags: {enableRetryPolicyy: true}}", "enableRetryPolicyy"},
		{"fsm: {injector: {replicaCount: 0}}", "/fsm/injector/replicaCount"},
		{"fsm: {injector: {webhookTimeoutSeconds: 31}}", "/fsm/injector/webhookTimeoutSeconds"},
		{"fsm: {controllerLogLevel: loud}", "/fsm/controllerLogLevel"},
		{"fsm: {webhookConfigNamePrefix: my-injector}", "fsm.webhookConfigNamePrefix"},
		{"fsm: {validatorWebhook: {webhookConfigurationName: my-validator}}", "fsm.validatorWebhook.webhookConfigurationName"},
		{"fsm: {webhooks: {bootstrapKeyAlgorithm: dsa}}", "/fsm/webhooks/bootstrapKeyAlgorithm"},
		{"fsm: {webhooks: {bootstrapSecretWriter: kubelet}}", "/fsm/webhooks/bootstrapSecretWriter"},
		{"fsm: {webhooks: {injectorNamespaceBurst: 0}}", "/fsm/webhooks/injectorNamespaceBurst"},
		{"fsm: {webhooks: {injectorMaxInFlight: -1}}", "/fsm/webhooks/injectorMaxInFlight"},
		{"fsm: {webhooks: {injectorSecretHandoffInFlight: 0}}", "/fsm/webhooks/injectorSecretHandoffInFlight"},
		{"fsm: {webhooks: {injectorSecretHandoffBudget: 0s}}", "/fsm/webhooks/injectorSecretHandoffBudget"},
		{"fsm: {webhooks: {injectorSecretHandoffBudget: 1}}", "/fsm/webhooks/injectorSecretHandoffBudget"},
		{"fsm: {webhooks: {injectorSecretHandoffBudget: 1 second}}", "/fsm/webhooks/injectorSecretHandoffBudget"},
		{"fsm: {webhooks: {tlsMinVersion: VersionTLS11}}", "/fsm/webhooks/tlsMinVersion"},
		{"fsm: {webhooks: {tlsCipherSuites: [TLS_RSA_WITH_AES_128_CBC_SHA]}}", "/fsm/webhooks/tlsCipherSuites"},
		{"fsm: {webhooks: {tlsCipherSuites: [TLS_AES_128_GCM_SHA256]}}", "/fsm/webhooks/tlsCipherSuites"},
		{"fsm: {webhooks: {tlsMinVersion: VersionTLS13, tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]}}",
			"fsm.webhooks.tlsCipherSuites [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]: they choose TLS 1.2 suites, and fsm.webhooks.tlsMinVersion is VersionTLS13"},
		// No fallback: the servers would inject flomesh/pipy: into every pod.
		{`fsm: {sidecar: {image: {tag: ""}}}`, "/fsm/sidecar/image/tag"},
		{"fsm: {bootstrapCertValidityDuration: 0h}", "/fsm/bootstrapCertValidityDuration"},
		{"fsm: {certificateProvider: {serviceCertValidityDuration: 0h0m}}", "/fsm/certificateProvider/serviceCertValidityDuration"},
		{"fsm: {certificateProvider: {serviceCertValidityDuration: 1d}}", "/fsm/certificateProvider/serviceCertValidityDuration"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			_, err := charttest.Render(ns, mustValues(t, tc.values))
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error lacks %q:\n%v", tc.want, err)
			}
		})
	}
}

// honoured is what the FSM keys the webhooks honour turn into.
type honoured struct {
	replicas     int64
	resources    map[string]any
	logLevel     string
	injectorTO   int64
	validatorTO  int64
	pdb          bool
	podLabels    map[string]string
	nodeSelector map[string]any
	tolerations  int
	extraArgs    []string
}

func TestFSMValuesHonoured(t *testing.T) {
	overridesDoc, err := os.ReadFile("testdata/fsm-values-typical-overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsmResource := map[string]any{
		"limits":   map[string]any{"cpu": "1", "memory": "512M"},
		"requests": map[string]any{"cpu": "0.5", "memory": "128M"},
	}
	overridesResource := map[string]any{
		"limits":   map[string]any{"cpu": "2", "memory": "1Gi"},
		"requests": map[string]any{"cpu": "500m", "memory": "256Mi"},
	}
	tests := []struct {
		name   string
		values map[string]any
		want   honoured
	}{
		{"chart defaults", mustValues(t, "{}"), honoured{
			replicas: 2, logLevel: "info", injectorTO: 20, validatorTO: 20, pdb: true,
			resources:    map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "512Mi"}},
			nodeSelector: map[string]any{"kubernetes.io/os": "linux"},
			extraArgs: []string{"--bootstrap-key-algorithm=auto", "--injector-namespace-rate=200", "--injector-namespace-burst=400",
				"--injector-max-in-flight=128", "--injector-secret-handoff-in-flight=16", "--injector-secret-handoff-budget=1s",
				"--tls-min-version=VersionTLS12"},
		}},
		{"FSM's values file", readValuesFile(t, fsmValuesFile), honoured{
			replicas: 1, logLevel: "info", injectorTO: 20, validatorTO: 20, pdb: false,
			resources:    fsmResource,
			nodeSelector: map[string]any{"kubernetes.io/os": "linux"},
		}},
		{"typical FSM overrides", mustValues(t, string(overridesDoc)), honoured{
			replicas: 3, logLevel: "debug", injectorTO: 25, validatorTO: 20, pdb: true,
			resources:    overridesResource,
			podLabels:    map[string]string{"team": "mesh"},
			nodeSelector: map[string]any{"kubernetes.io/os": "linux", "node-role.example.com/mesh": "true"},
			tolerations:  1,
		}},
		{"our keys win over FSM's", mergeValues(t, string(overridesDoc), `
fsm:
  controllerLogLevel: fatal
  webhooks:
    replicaCount: 4
    logLevel: warn
    resources: {requests: {cpu: 50m}}
    podLabels: {team: webhooks}
    tolerations: [{key: a, operator: Exists}]
    bootstrapKeyAlgorithm: rsa2048
    bootstrapSecretWriter: controller
    injectorNamespaceRate: 0
    injectorNamespaceBurst: 7
    injectorMaxInFlight: 0
    injectorSecretHandoffInFlight: 4
    injectorSecretHandoffBudget: 250ms
    tlsCipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
  injector: {enablePodDisruptionBudget: false}
`), honoured{
			replicas: 4, logLevel: "warn", injectorTO: 25, validatorTO: 20, pdb: false,
			resources:    map[string]any{"requests": map[string]any{"cpu": "50m"}},
			podLabels:    map[string]string{"team": "webhooks"},
			nodeSelector: map[string]any{"kubernetes.io/os": "linux", "node-role.example.com/mesh": "true"},
			tolerations:  2,
			extraArgs: []string{"--bootstrap-key-algorithm=rsa2048", "--bootstrap-secret-writer=controller", "--injector-namespace-rate=0", "--injector-namespace-burst=7",
				"--injector-max-in-flight=0", "--injector-secret-handoff-in-flight=4", "--injector-secret-handoff-budget=250ms",
				"--tls-min-version=VersionTLS12", "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
		}},
		{"FSM log level mapped", mustValues(t, "fsm: {controllerLogLevel: trace}"), honoured{
			replicas: 2, logLevel: "debug", injectorTO: 20, validatorTO: 20, pdb: true,
			resources:    map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "512Mi"}},
			nodeSelector: map[string]any{"kubernetes.io/os": "linux"},
		}},
		{"TLS 1.3 only", mustValues(t, "fsm: {webhooks: {tlsMinVersion: VersionTLS13}}"), honoured{
			replicas: 2, logLevel: "info", injectorTO: 20, validatorTO: 20, pdb: true,
			resources:    map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "512Mi"}},
			nodeSelector: map[string]any{"kubernetes.io/os": "linux"},
			extraArgs:    []string{"--tls-min-version=VersionTLS13"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := charttest.Render(ns, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			dep := r.Find("Deployment", "fsm-webhooks")
			if dep == nil {
				t.Fatal("no Deployment fsm-webhooks")
			}
			if got, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); got != tc.want.replicas {
				t.Errorf("replicas %d, want %d", got, tc.want.replicas)
			}
			c := container(t, dep)
			if got := c["resources"]; !reflect.DeepEqual(got, tc.want.resources) {
				t.Errorf("resources %v, want %v", got, tc.want.resources)
			}
			argLine := strings.Join(args(t, dep), " ")
			for _, a := range append([]string{"--log-level=" + tc.want.logLevel}, tc.want.extraArgs...) {
				if !strings.Contains(argLine+" ", a+" ") {
					t.Errorf("args lack %s: %s", a, argLine)
				}
			}
			labels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
			for k, v := range tc.want.podLabels {
				if labels[k] != v {
					t.Errorf("pod label %s=%q, want %q", k, labels[k], v)
				}
			}
			if labels["app"] != "fsm-webhooks" {
				t.Errorf("selector label app lost: %v", labels)
			}
			if got, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec", "nodeSelector"); !reflect.DeepEqual(got, tc.want.nodeSelector) {
				t.Errorf("nodeSelector %v, want %v", got, tc.want.nodeSelector)
			}
			if got, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "tolerations"); len(got) != tc.want.tolerations {
				t.Errorf("%d tolerations, want %d: %v", len(got), tc.want.tolerations, got)
			}
			if got := r.Find("PodDisruptionBudget", "fsm-webhooks") != nil; got != tc.want.pdb {
				t.Errorf("PodDisruptionBudget rendered %v, want %v", got, tc.want.pdb)
			}
			for kind, want := range map[string]int64{
				"MutatingWebhookConfiguration":   tc.want.injectorTO,
				"ValidatingWebhookConfiguration": tc.want.validatorTO,
			} {
				for _, o := range r.All() {
					if o.GetKind() != kind {
						continue
					}
					hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
					for _, h := range hooks {
						if got := h.(map[string]any)["timeoutSeconds"]; toInt64(got) != want {
							t.Errorf("%s %s timeoutSeconds %v, want %d", kind, o.GetName(), got, want)
						}
					}
				}
			}
		})
	}
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

// mergeValues is `-f base -f override`: override's maps merged into base's.
func mergeValues(t *testing.T, base, override string) map[string]any {
	t.Helper()
	b, o := mustValues(t, base), mustValues(t, override)
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			if sm, ok := v.(map[string]any); ok {
				if dm, ok := dst[k].(map[string]any); ok {
					merge(dm, sm)
					continue
				}
			}
			dst[k] = v
		}
	}
	merge(b, o)
	return b
}

// TestSchemaAcceptsFSMSchemaOnlyKeys: FSM v1.5.1's values.schema.json
// declares keys its values.yaml does not carry (so hack/fsmschema, which
// reads the values file, cannot add them); an FSM values file setting them
// installs with FSM's chart and must install here. FSM's preset writes
// fsm.tracing.sampledFraction (tracing enabled) and the whole
// fsm.localDNSProxy map into the MeshConfig, and so does this chart; the
// others configure nothing FSM's templates read.
func TestSchemaAcceptsFSMSchemaOnlyKeys(t *testing.T) {
	for name, doc := range map[string]string{
		"fsm.tracing.sampledFraction": `
fsm:
  tracing: {enable: true, address: jaeger.fsm-system.svc.cluster.local, port: 9411, endpoint: /api/v2/spans, sampledFraction: "0.2"}
`,
		"fsm.localDNSProxy upstreams and db": `
fsm:
  localDNSProxy:
    enable: true
    primaryUpstreamDNSServerIPAddr: 10.96.0.10
    secondaryUpstreamDNSServerIPAddr: 10.96.0.11
    db: [{dn: db.example.com, ips: [{ipv4: 10.0.0.5}]}]
`,
		"fsm.sidecar resources and init image": `
fsm:
  sidecar:
    resource: {limits: {cpu: "1", memory: 512M}, requests: {cpu: 100m, memory: 64M}}
    initResources: {limits: {cpu: 500m, memory: 128M}, requests: {cpu: 100m, memory: 32M}}
    healthcheckResources: {limits: {cpu: 500m, memory: 128M}, requests: {cpu: 100m, memory: 32M}}
    initContainerImage: {registry: flomesh, name: fsm-sidecar-init, tag: 1.5.1}
`,
		"fsm.pspEnabled": `fsm: {pspEnabled: false}`,
		"fsm.fsmXnetwork schema-only keys": `
fsm:
  fsmXnetwork:
    podLabels: {team: mesh}
    xnet: {features: {mesh: {excludeNamespaces: [kube-system]}}}
`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := charttest.Render(ns, mustValues(t, doc)); err != nil {
				t.Errorf("FSM v1.5.1's chart schema accepts these values, this chart refuses them:\n%v", err)
			}
		})
	}
}
