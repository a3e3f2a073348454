package reviewhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

const request = `"request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"operation":"CREATE","namespace":"ns","userInfo":{"username":"alice","extra":{"k":["v"]}},"dryRun":true,"object":{"kind":"Pod","metadata":{"name":"p"}}}`

func TestServeHTTP(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		contentType string
		wantVersion string
		wantUID     string
		wantCode    int32
		wantMsg     string
	}{
		{name: "v1 review reaches the handler", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantUID: "u-1", wantCode: 200, wantMsg: "alice CREATE ns/pods dry-run object={\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}"},
		{name: "v1beta1 is answered as v1beta1", body: `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview",` + request + `}`,
			wantVersion: "admission.k8s.io/v1beta1", wantUID: "u-1", wantCode: 200, wantMsg: "alice CREATE"},
		{name: "content type with parameters", contentType: "application/json; charset=utf-8", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantUID: "u-1", wantCode: 200},
		{name: "no request", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "the AdmissionReview has no request"},
		{name: "names are case-sensitive like the apiserver's", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Request":{"uid":"u-1"}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "the AdmissionReview has no request"},
		{name: "not a review", body: `{"apiVersion":"v1","kind":"Pod",` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `got apiVersion "v1" kind "Pod"`},
		{name: "no type meta", body: `{` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `got apiVersion "" kind ""`},
		{name: "duplicate names", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `,` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "duplicate object member name"},
		{name: "wrong field type", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "/request/uid"},
		{name: "truncated", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "unexpected EOF"},
		{name: "empty body", body: "", wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "request body is empty"},
		{name: "wrong content type", contentType: "text/yaml", body: `{}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `Content-Type must be application/json, got "text/yaml"`},
		{name: "too large", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 413, wantMsg: "larger than 7340032 bytes"},
		{name: "handler panic is a 500 result", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"boom"}}`,
			wantVersion: "admission.k8s.io/v1", wantUID: "boom", wantCode: 500, wantMsg: "panic: boom"},
	}
	h := NewAdmission(admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		if req.UID == "boom" {
			panic("boom")
		}
		msg := req.UserInfo.Username + " " + string(req.Operation) + " " + req.Namespace + "/" + req.Resource.Resource
		if req.DryRun != nil && *req.DryRun {
			msg += " dry-run"
		}
		return admission.Allowed(msg + " object=" + string(req.Object.Raw))
	}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body *bytes.Reader
			if tc.body != "" {
				body = bytes.NewReader([]byte(tc.body))
			}
			req := httptest.NewRequest(http.MethodPost, "/x", nil)
			if body != nil {
				req = httptest.NewRequest(http.MethodPost, "/x", body)
			}
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d, want 200 (the apiserver reads the result code from the review)", rec.Code)
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("response is not a review (%v): %s", err, rec.Body.String())
			}
			if out.APIVersion != tc.wantVersion || out.Kind != "AdmissionReview" {
				t.Errorf("answered as %s %s, want %s AdmissionReview", out.APIVersion, out.Kind, tc.wantVersion)
			}
			if string(out.Response.UID) != tc.wantUID {
				t.Errorf("uid %q, want %q", out.Response.UID, tc.wantUID)
			}
			code, msg := int32(http.StatusOK), ""
			if out.Response.Result != nil {
				code, msg = out.Response.Result.Code, out.Response.Result.Message
			}
			if code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("result %d %q, want %d containing %q", code, msg, tc.wantCode, tc.wantMsg)
			}
			if out.Response.Allowed != (tc.wantCode == 200) {
				t.Errorf("allowed=%v for result %d", out.Response.Allowed, code)
			}
		})
	}
}

// FuzzUnmarshal: any body either decodes to a review with a request or is
// refused with a 4xx status; nothing panics.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":null,"oldObject":[1,{}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ar, code, err := Unmarshal(body)
		if err != nil {
			if code < 400 || code > 499 || ar != nil {
				t.Fatalf("error %v with status %d and review %v", err, code, ar)
			}
			return
		}
		if ar.Request == nil || code != 0 {
			t.Fatalf("accepted a review without a request (status %d)", code)
		}
	})
}
