package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	v1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestMeshConfigMatchesPreset: with default values the chart's MeshConfig is
// the repo's preset (apis/config/v1alpha3/testdata), which the apis package
// keeps valid v1alpha3; only the random cluster uid differs. Strict decoding
// catches a field the Go types do not know.
func TestMeshConfigMatchesPreset(t *testing.T) {
	r := mustRender(t, "")
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")

	js, err := json.Marshal(mc.Object)
	if err != nil {
		t.Fatal(err)
	}
	var typed v1alpha3.MeshConfig
	if err := yaml.UnmarshalStrict(js, &typed); err != nil {
		t.Fatalf("rendered MeshConfig is not valid v1alpha3: %v", err)
	}
	if typed.Spec.ClusterSet.UID == "" {
		t.Error("clusterSet.uid empty")
	}

	data, err := os.ReadFile(filepath.Join(charttest.Dir(), "..", "..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	preset := map[string]any{}
	if err := yaml.Unmarshal(data, &preset); err != nil {
		t.Fatal(err)
	}
	gotSpec := mc.Object["spec"].(map[string]any)
	wantSpec := preset["spec"].(map[string]any)
	for _, s := range []map[string]any{gotSpec, wantSpec} {
		unstructured.RemoveNestedField(s, "clusterSet", "uid")
	}
	// Compare through JSON so number types agree.
	if !reflect.DeepEqual(normalize(t, gotSpec), normalize(t, wantSpec)) {
		g, _ := yaml.Marshal(gotSpec)
		w, _ := yaml.Marshal(wantSpec)
		t.Errorf("chart MeshConfig spec differs from the preset\n--- chart\n%s\n--- preset\n%s", g, w)
	}
}

func TestMeshConfigFromValues(t *testing.T) {
	r := mustRender(t, `
fsm:
  meshConfig: {clusterUID: 3f1c2a9e-8b7d-4c6e-9f00-1234567890ab}
  certificateProvider: {serviceCertValidityDuration: 1h, certKeyBitSize: 4096}
  sidecar: {sidecarLogLevel: debug}
  outboundPortExclusionList: [6379]
  outboundIPRangeExclusionList: [10.0.0.0/8]
  featureFlags: {enablePluginPolicy: true}
`)
	mc := mustFind(t, r, "MeshConfig", "fsm-mesh-config")
	for path, want := range map[string]any{
		"spec.clusterSet.uid":                          "3f1c2a9e-8b7d-4c6e-9f00-1234567890ab",
		"spec.certificate.serviceCertValidityDuration": "1h",
		"spec.certificate.certKeyBitSize":              int64(4096),
		"spec.sidecar.logLevel":                        "debug",
		"spec.featureFlags.enablePluginPolicy":         true,
		"spec.featureFlags.enableIngressBackendPolicy": true,
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(mc.Object, splitPath(path)...)
		if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	ports, _, _ := unstructured.NestedSlice(mc.Object, "spec", "traffic", "outboundPortExclusionList")
	if len(ports) != 1 || ports[0] != int64(6379) {
		t.Errorf("outboundPortExclusionList %v", ports)
	}
	if r := mustRender(t, "fsm: {meshConfig: {create: false}}"); r.Find("MeshConfig", "fsm-mesh-config") != nil {
		t.Error("MeshConfig rendered with create=false")
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func normalize(t *testing.T, v any) any {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
