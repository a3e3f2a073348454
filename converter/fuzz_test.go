package converter

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// FuzzConvertReview sends arbitrary bodies to the handler. Seeds are in
// testdata/fuzz/FuzzConvertReview (plain `go test` runs them). Whatever the
// body, the handler must answer with a ConversionReview, never panic (not
// even a recovered one), echo the uid, and on success return one object in
// the desired version per object sent.
func FuzzConvertReview(f *testing.F) {
	f.Add(reviewBody(f, "seed-up", "config.flomesh.io/v1alpha3", v1alpha1Obj))
	f.Add(reviewBody(f, "seed-down", "config.flomesh.io/v1alpha1", v1alpha3Obj))
	h := NewHandler(meshScheme(f), group, logr.Discard())
	f.Fuzz(func(t *testing.T, body []byte) {
		before := testutil.ToFloat64(panics)
		r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if testutil.ToFloat64(panics) != before {
			t.Fatalf("conversion panicked on %q", body)
		}
		var resp apixv1.ConversionReview
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Response == nil {
			t.Fatalf("HTTP %d: not a ConversionReview: %q", w.Code, w.Body.String())
		}
		var req apixv1.ConversionReview
		if w.Code != http.StatusOK {
			return
		}
		// Decode as the handler (and the apiserver) do: field names are
		// case-sensitive, so "oBjeCts" is not "objects".
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &req); err != nil || req.Request == nil {
			t.Fatalf("HTTP 200 for a body that is not a ConversionReview request: %q", body)
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
