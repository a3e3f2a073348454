package validator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// fullMeshConfig is the preset with every list and optional block filled, so
// every rule runs.
func fullMeshConfig(b testing.TB) []byte {
	var m map[string]any
	if err := json.Unmarshal(presetJSON(b), &m); err != nil {
		b.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	sc := spec["sidecar"].(map[string]any)
	sc["sidecarImage"] = "flomesh/pipy:1.5.14"
	sc["tlsMinProtocolVersion"], sc["tlsMaxProtocolVersion"] = "TLSv1_2", "TLSv1_3"
	sc["cipherSuites"] = []any{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}
	sc["ecdhCurves"] = []any{"X25519", "P-256", "P-384"}
	sc["localDNSProxy"] = map[string]any{"enable": true, "primaryUpstreamDNSServerIPAddr": "10.96.0.10", "secondaryUpstreamDNSServerIPAddr": "10.96.0.11",
		"wildcard": map[string]any{"enable": true, "los": []any{map[string]any{"ipv4": "127.0.0.2", "ipv6": "::1"}}}}
	tr := spec["traffic"].(map[string]any)
	tr["outboundIPRangeExclusionList"] = []any{"10.96.0.0/12", "169.254.169.254/32", "fd00:10:96::/112"}
	tr["outboundIPRangeInclusionList"] = []any{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"}
	tr["outboundPortExclusionList"] = []any{22, 53, 443, 3306, 6379}
	tr["inboundPortExclusionList"] = []any{15000, 15001, 9091}
	tr["inboundExternalAuthorization"] = map[string]any{"enable": true, "address": "authz", "port": 9000, "timeout": "1s", "failureModeAllow": false}
	obs := spec["observability"].(map[string]any)
	obs["tracing"] = map[string]any{"enable": true, "port": 9411, "address": "jaeger", "endpoint": "/api/v2/spans", "sampledFraction": "0.25"}
	spec["image"].(map[string]any)["name"] = map[string]any{"controller": "fsm-controller", "injector": "fsm-injector", "bootstrap": "fsm-bootstrap"}
	spec["certificate"].(map[string]any)["ingressGateway"] = map[string]any{"subjectAltNames": []any{"gw.fsm-system.cluster.local"}, "validityDuration": "24h",
		"secret": map[string]any{"name": "gw", "namespace": "fsm-system"}}
	out, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkHandleMeshConfig measures one full MeshConfig UPDATE through the
// served HTTP wrapper: AdmissionReview JSON in, AdmissionReview JSON out.
func BenchmarkHandleMeshConfig(b *testing.B) {
	obj := fullMeshConfig(b)
	if r := meshconfig.Validate("v1alpha3", obj); len(r.Errors) != 0 {
		b.Fatalf("benchmark object must be valid: %v", r.Errors)
	}
	ar := admissionv1.AdmissionReview{}
	if err := json.Unmarshal(review(b, "bench", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Update, obj), &ar); err != nil {
		b.Fatal(err)
	}
	ar.Request.OldObject.Raw = obj
	body, err := json.Marshal(ar)
	if err != nil {
		b.Fatal(err)
	}
	// serve's logger (JSON zap at info; written nowhere here): with none
	// set, controller-runtime's logger stays an unfulfilled promise that
	// keeps every request logger ever derived from it, a heap serve does
	// not have.
	ctrllog.SetLogger(zap.New(zap.Level(zapcore.InfoLevel), zap.UseDevMode(false), zap.WriteTo(io.Discard)))
	h := reviewhttp.NewAdmission(NewHandler(Options{}))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, fsmnames.ValidatorPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"allowed":true`)) {
			b.Fatalf("unexpected response %d %s", rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkValidateMeshConfig is the pure validation alone.
func BenchmarkValidateMeshConfig(b *testing.B) {
	obj := fullMeshConfig(b)
	b.ReportAllocs()
	for b.Loop() {
		if r := meshconfig.Validate("v1alpha3", obj); len(r.Errors) != 0 {
			b.Fatal(r.Errors)
		}
	}
}
