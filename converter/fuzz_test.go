package converter

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// FuzzConvertReview sends arbitrary bodies to the handler as served
// (reviewhttp.NewConversion, panic recovery off). Seeds are in
// testdata/fuzz/FuzzConvertReview (plain `go test` runs them). Whatever the
// body, the answer must be a ConversionReview, nothing may panic, the uid is
// echoed, and on success there is one object in the desired version per
// object sent.
func FuzzConvertReview(f *testing.F) {
	f.Add(reviewBody(f, "seed-up", "config.flomesh.io/v1alpha3", v1alpha1Obj))
	f.Add(reviewBody(f, "seed-down", "config.flomesh.io/v1alpha1", v1alpha3Obj))
	h := reviewhttp.NewConversion(NewHandler(meshScheme(f), group, logr.Discard())).WithRecoverPanic(false)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, fsmnames.ConverterPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if len(body) == 0 {
			// Refused before decoding, as a plain HTTP error.
			if w.Code != http.StatusBadRequest {
				t.Fatalf("empty body: HTTP %d, want 400", w.Code)
			}
			return
		}
		var resp apixv1.ConversionReview
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Response == nil {
			t.Fatalf("HTTP %d: not a ConversionReview: %q", w.Code, w.Body.String())
		}
		if w.Code != http.StatusOK {
			return
		}
		req, err := reviewhttp.UnmarshalConversion(body)
		if err != nil {
			t.Fatalf("HTTP 200 for a body that is not a ConversionReview request (%v): %q", err, body)
		}
		if resp.Response.UID != req.Request.UID {
			t.Fatalf("uid %q not echoed (got %q)", req.Request.UID, resp.Response.UID)
		}
		if resp.Response.Result.Status != metav1.StatusSuccess {
			return
		}
		if len(resp.Response.ConvertedObjects) != len(req.Request.Objects) {
			t.Fatalf("%d objects in, %d out", len(req.Request.Objects), len(resp.Response.ConvertedObjects))
		}
		for i, o := range resp.Response.ConvertedObjects {
			var tm metav1.TypeMeta
			if err := json.Unmarshal(o.Raw, &tm); err != nil || tm.APIVersion != req.Request.DesiredAPIVersion {
				t.Fatalf("object %d: apiVersion %q, want %q (err %v)", i, tm.APIVersion, req.Request.DesiredAPIVersion, err)
			}
		}
	})
}
