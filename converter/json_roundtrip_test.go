package converter

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// These tests go through Handler.Convert with JSON, as the apiserver does:
// what typed round trips (roundtrip_test.go) cannot see, such as a key
// present with "" versus absent, or a stored number the Go types cannot
// decode.

func presetMap(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// convertOne converts one object to desired; nil and the message on failure.
func convertOne(t *testing.T, h *Handler, desired string, obj []byte) ([]byte, string) {
	t.Helper()
	resp := h.Convert(context.Background(), &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: desired, Objects: []runtime.RawExtension{{Raw: obj}}})
	if resp.Result.Status != "Success" || len(resp.ConvertedObjects) != 1 {
		return nil, resp.Result.Message
	}
	return resp.ConvertedObjects[0].Raw, ""
}

// TestValidatorAdmittedIntegersConvert: every integer the validator admits
// in the storage version converts to the old versions (the schema leaves
// these unbounded, the Go types are int32: one stored value beyond that
// fails every GET and LIST in v1alpha1/v1alpha2), and the first value beyond
// the admitted range (remoteLogging.level: FSM's uint16) is refused.
func TestValidatorAdmittedIntegersConvert(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	for _, tc := range []struct {
		path     []string
		admitted int64 // the last value admitted
		step     int64 // towards the first refused one
	}{
		{[]string{"observability", "remoteLogging", "level"}, math.MaxUint16, 1},
		{[]string{"observability", "remoteLogging", "level"}, 0, -1},
		{[]string{"egressGateway", "replicas"}, math.MaxInt32, 1},
	} {
		for _, v := range []int64{tc.admitted, tc.admitted + tc.step} {
			m := presetMap(t)
			node := m["spec"].(map[string]any)
			for _, k := range tc.path[:len(tc.path)-1] {
				next, _ := node[k].(map[string]any)
				if next == nil {
					next = map[string]any{}
					if k == "egressGateway" {
						next = map[string]any{"enabled": false, "logLevel": "info", "mode": "http2tunnel"}
					}
					node[k] = next
				}
				node = next
			}
			node[tc.path[len(tc.path)-1]] = v
			obj, _ := json.Marshal(m)
			errs := meshconfig.Validate(meshconfig.V1alpha3, obj).Errors
			if v != tc.admitted {
				if len(errs) == 0 {
					t.Errorf("spec.%v=%d admitted by the validator", tc.path, v)
				}
				continue
			}
			if len(errs) != 0 {
				t.Fatalf("spec.%v=%d: validator refuses it: %v", tc.path, v, errs)
			}
			for _, version := range []string{group + "/v1alpha1", group + "/v1alpha2"} {
				down, msg := convertOne(t, h, version, obj)
				if down == nil {
					t.Errorf("spec.%v=%d, admitted by the validator, does not convert to %s: %s", tc.path, v, version, msg)
					continue
				}
				if up, msg := convertOne(t, h, group+"/v1alpha3", down); up == nil {
					t.Errorf("spec.%v=%d does not convert back from %s: %s", tc.path, v, version, msg)
				}
			}
		}
	}
}

// TestClusterSetValuesSurviveOldVersions: spec.clusterSet.region, zone and
// group default to "default" in the v1alpha3 schema, so an explicit "" must
// come back from a round trip through v1alpha1/v1alpha2 as "", present,
// not absent (which the apiserver's defaulting would turn into "default").
func TestClusterSetValuesSurviveOldVersions(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	for _, value := range []string{"", "default", "eu-west"} {
		for _, version := range []string{group + "/v1alpha1", group + "/v1alpha2"} {
			t.Run(version+" "+value, func(t *testing.T) {
				m := presetMap(t)
				cs := m["spec"].(map[string]any)["clusterSet"].(map[string]any)
				cs["region"], cs["zone"], cs["group"] = value, value, value
				obj, _ := json.Marshal(m)
				down, msg := convertOne(t, h, version, obj)
				if down == nil {
					t.Fatalf("down to %s: %s", version, msg)
				}
				up, msg := convertOne(t, h, group+"/v1alpha3", down)
				if up == nil {
					t.Fatalf("up from %s: %s", version, msg)
				}
				var back map[string]any
				if err := json.Unmarshal(up, &back); err != nil {
					t.Fatal(err)
				}
				got := back["spec"].(map[string]any)["clusterSet"].(map[string]any)
				for _, k := range []string{"region", "zone", "group"} {
					if v, ok := got[k]; !ok || v != value {
						t.Errorf("spec.clusterSet.%s was %q; after the round trip present=%v value=%v", k, value, ok, v)
					}
				}
			})
		}
	}
}
