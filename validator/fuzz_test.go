package validator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Seeds live in testdata/fuzz/<FuzzName>; plain `go test` runs them.

// FuzzValidateAdmissionReview posts arbitrary bodies through the served HTTP
// wrapper with panic recovery OFF, so a panic in the handler fails the fuzz
// run instead of becoming a 500. Every answer to a non-empty body must be an
// AdmissionReview echoing the request uid; an empty body (which no
// apiserver sends) gets the shared request path's plain 400.
func FuzzValidateAdmissionReview(f *testing.F) {
	preset := presetJSON(f)
	for _, k := range []struct{ g, v, k string }{
		{meshconfig.Group, "v1alpha1", "MeshConfig"}, {meshconfig.Group, "v1alpha3", "MeshConfig"},
		{"policy.flomesh.io", "v1alpha1", "IngressBackend"}, {"policy.flomesh.io", "v1alpha1", "Egress"},
		{"policy.flomesh.io", "v1alpha1", "UpstreamTrafficSetting"}, {"plugin.flomesh.io", "v1alpha1", "Plugin"},
	} {
		f.Add(review(f, "seed", k.g, k.v, k.k, admissionv1.Create, preset))
	}
	f.Add(review(f, "seed", meshconfig.Group, "v1alpha3", "MeshConfig", admissionv1.Delete, nil))

	h := reviewhttp.NewAdmission(NewHandler(Options{
		Reader:                fake.NewClientBuilder().Build(),
		ValidateTrafficTarget: true,
	})).WithRecoverPanic(false)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, fsmnames.ValidatorPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if len(body) == 0 {
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("empty body: status %d, want 400: %q", rec.Code, rec.Body.String())
			}
			return
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("not an AdmissionReview response (%v): %q", err, rec.Body.String())
		}
		// Case-sensitive, as the apiserver's own decoders: a body keyed
		// "Uid" carries no uid to echo (encoding/json would read one).
		var in admissionv1.AdmissionReview
		if kjson.UnmarshalCaseSensitivePreserveInts(body, &in) == nil && in.Request != nil && out.Response.Result != nil && out.Response.Result.Code != http.StatusBadRequest {
			if out.Response.UID != in.Request.UID {
				t.Fatalf("uid %q not echoed (got %q)", in.Request.UID, out.Response.UID)
			}
		}
		if !out.Response.Allowed && (out.Response.Result == nil || out.Response.Result.Message == "") {
			t.Fatalf("denial without a message: %+v", out.Response)
		}
		for _, w := range out.Response.Warnings {
			// The apiserver silently drops a warning it cannot put in a header.
			if _, err := utilnet.NewWarningHeader(299, "-", w); err != nil {
				t.Fatalf("warning %q would be dropped by the apiserver: %v", w, err)
			}
		}
	})
}
