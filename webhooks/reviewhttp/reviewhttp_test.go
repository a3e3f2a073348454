package reviewhttp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	conversionmetrics "sigs.k8s.io/controller-runtime/pkg/webhook/conversion/metrics"
)

const request = `"request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"operation":"CREATE","namespace":"ns","userInfo":{"username":"alice","extra":{"k":["v"]}},"dryRun":true,"object":{"kind":"Pod","metadata":{"name":"p"}}}`

// post sends body; chunked hides its length, as a streaming client does.
func post(h http.Handler, method, contentType string, body []byte, chunked bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/x", bytes.NewReader(body))
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if chunked {
		req.ContentLength = -1
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func count(webhook, result string) float64 {
	return testutil.ToFloat64(requests.WithLabelValues(webhook, result))
}

// TestTransport: what no apiserver sends is answered with a plain HTTP
// status by both review types, before any handler runs, and counted.
func TestTransport(t *testing.T) {
	reached := false
	handlers := map[string]http.Handler{
		"admission": NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			reached = true
			return admission.Allowed("")
		})).Named("transport-admission"),
		"conversion": NewConversion(converterFunc(func(*apixv1.ConversionRequest) *apixv1.ConversionResponse {
			reached = true
			return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusSuccess}}
		})).Named("transport-conversion"),
	}
	for kind, h := range handlers {
		review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`
		if kind == "conversion" {
			review = `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u-1","desiredAPIVersion":"x/v1","objects":[]}}`
		}
		for _, tc := range []struct {
			name, method, contentType, body string
			want                            int
			wantInMessage                   string
		}{
			{"review", http.MethodPost, "application/json", review, http.StatusOK, ""},
			{"json with charset", http.MethodPost, "application/json; charset=utf-8", review, http.StatusOK, ""},
			{"GET", http.MethodGet, "application/json", review, http.StatusMethodNotAllowed, "must be POST, got GET"},
			{"yaml body", http.MethodPost, "application/yaml", `a: b`, http.StatusUnsupportedMediaType, `got "application/yaml"`},
			{"no content type", http.MethodPost, "", review, http.StatusUnsupportedMediaType, "got none"},
			{"empty body", http.MethodPost, "application/json", ``, http.StatusBadRequest, "empty request body"},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				reached = false
				webhook := "transport-" + kind
				before := count(webhook, ResultBadRequest)
				rec := post(h, tc.method, tc.contentType, []byte(tc.body), false)
				ok := tc.want == http.StatusOK
				if rec.Code != tc.want || reached != ok || !strings.Contains(rec.Body.String(), tc.wantInMessage) {
					t.Fatalf("status %d body %q reached %v; want %d containing %q reached %v",
						rec.Code, rec.Body.String(), reached, tc.want, tc.wantInMessage, ok)
				}
				if tc.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
					t.Errorf("Allow header %q, want POST", rec.Header().Get("Allow"))
				}
				if got, want := count(webhook, ResultBadRequest)-before, map[bool]float64{true: 0, false: 1}[ok]; got != want {
					t.Errorf("bad_request counted %v times, want %v", got, want)
				}
			})
		}
	}
}

// TestEmptyBodyOfUnknownLength: a chunked request that ends without a byte
// is refused as empty, not as a review that failed to decode.
func TestEmptyBodyOfUnknownLength(t *testing.T) {
	reached := false
	h := NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		reached = true
		return admission.Allowed("")
	}))
	req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(""))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if body := rec.Body.String(); reached || !strings.Contains(body, `"code":400`) || !strings.Contains(body, "request body is empty") {
		t.Fatalf("status %d body %q reached %v; want a 400 saying the body is empty", rec.Code, body, reached)
	}
}

// TestBodyShorterThanItsLength: a body that ends before its Content-Length
// (a client cut off mid-request) is a 400 naming the read, never a review
// decoded from a zero-padded buffer.
func TestBodyShorterThanItsLength(t *testing.T) {
	reached := false
	h := NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		reached = true
		return admission.Allowed("")
	}))
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`
	req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(review))
	req.ContentLength = int64(len(review)) + 100
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	// Answered as a review, as every bad request is once the kind is known.
	if body := rec.Body.String(); reached || !strings.Contains(body, `"code":400`) || !strings.Contains(body, "reading the request body: unexpected EOF") {
		t.Fatalf("status %d body %q reached %v; want a 400 naming the read, handler not reached", rec.Code, body, reached)
	}
}

func TestAdmission(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		chunked     bool
		wantVersion string
		wantUID     string
		wantCode    int32
		wantMsg     string
	}{
		{name: "v1 review reaches the handler", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantUID: "u-1", wantCode: 200, wantMsg: "alice CREATE ns/pods dry-run object={\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}"},
		{name: "v1beta1 is answered as v1beta1", body: `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview",` + request + `}`,
			wantVersion: "admission.k8s.io/v1beta1", wantUID: "u-1", wantCode: 200, wantMsg: "alice CREATE"},
		{name: "no request", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "the AdmissionReview has no request"},
		{name: "names are case-sensitive like the apiserver's", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Request":{"uid":"u-1"}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "the AdmissionReview has no request"},
		{name: "no uid", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "the AdmissionReview's request has no uid"},
		{name: "not a review", body: `{"apiVersion":"v1","kind":"Pod",` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `got apiVersion "v1" kind "Pod"`},
		{name: "no type meta", body: `{` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `got apiVersion "" kind ""`},
		{name: "duplicate names", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `,` + request + `}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "duplicate object member name"},
		// Anywhere in the review, the objects included, not only at the top.
		{name: "duplicate names inside the object", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","object":{"spec":{"a":1,"a":2}}}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: `duplicate object member name "a" within "/request/object/spec"`},
		{name: "wrong field type", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "/request/uid"},
		{name: "truncated", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{`,
			wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMsg: "unexpected EOF"},
		{name: "too large by its length", body: tooLarge("admission.k8s.io/v1", "AdmissionReview"),
			wantVersion: "admission.k8s.io/v1", wantCode: 413, wantMsg: "larger than 7340032 bytes"},
		{name: "too large while streamed", body: tooLarge("admission.k8s.io/v1", "AdmissionReview"), chunked: true,
			wantVersion: "admission.k8s.io/v1", wantCode: 413, wantMsg: "larger than 7340032 bytes"},
		{name: "handler panic is a 500 result with the uid", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"boom"}}`,
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
			rec := post(h, http.MethodPost, "application/json", []byte(tc.body), tc.chunked)
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

func tooLarge(apiVersion, kind string) string {
	return `{"apiVersion":"` + apiVersion + `","kind":"` + kind + `","x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
}

// TestAdmissionResults: every kind of response is counted under its result,
// with its latency, and nothing stays in flight.
func TestAdmissionResults(t *testing.T) {
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`)
	for _, tc := range []struct {
		resp admission.Response
		want string
	}{
		{admission.Allowed(""), ResultAllowed},
		{admission.Patched("", jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{"a": "b"})), ResultPatched},
		// A handler may hand over its JSON patch already encoded (no
		// Patches to complete from): still a patch.
		{admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`),
			PatchType: ptr.To(admissionv1.PatchTypeJSONPatch)}}, ResultPatched},
		{admission.Allowed("").WithWarnings("careful"), ResultWarned},
		{admission.Denied("no"), ResultDenied},
		{admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Result: &metav1.Status{Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid}}}, ResultDenied},
		{admission.Errored(http.StatusTooManyRequests, errTooLarge), ResultDenied},
		// FSM's denial shape (400, no reason) is a verdict; a 400 the handler
		// marks BadRequest is its failure.
		{Denied("no"), ResultDenied},
		{BadRequest(errTooLarge), ResultError},
		{admission.Errored(http.StatusInternalServerError, errTooLarge), ResultError},
	} {
		t.Run(tc.want, func(t *testing.T) {
			h := NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return tc.resp })).Named("results")
			before := count("results", tc.want)
			beforeLatency := testutil.CollectAndCount(duration)
			post(h, http.MethodPost, "application/json", body, false)
			if got := count("results", tc.want) - before; got != 1 {
				t.Errorf("%s counted %v times, want 1", tc.want, got)
			}
			if testutil.CollectAndCount(duration) < beforeLatency || testutil.ToFloat64(inFlight.WithLabelValues("results")) != 0 {
				t.Errorf("latency series %d (was %d), in flight %v", testutil.CollectAndCount(duration), beforeLatency,
					testutil.ToFloat64(inFlight.WithLabelValues("results")))
			}
		})
	}
}

type converterFunc func(*apixv1.ConversionRequest) *apixv1.ConversionResponse

func (f converterFunc) Convert(_ context.Context, r *apixv1.ConversionRequest) *apixv1.ConversionResponse {
	return f(r)
}

func TestConversion(t *testing.T) {
	const obj = `{"apiVersion":"x/v1","kind":"K","metadata":{"name":"o"}}`
	review := func(uid, desired string) string {
		return `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"` + uid +
			`","desiredAPIVersion":"` + desired + `","objects":[` + obj + `]}}`
	}
	h := NewConversion(converterFunc(func(r *apixv1.ConversionRequest) *apixv1.ConversionResponse {
		switch r.DesiredAPIVersion {
		case "x/panic":
			panic("boom")
		case "x/nil":
			return nil
		case "x/fail":
			return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusFailure, Message: "cannot"}}
		}
		// The objects as received, the uid left to the wrapper.
		return &apixv1.ConversionResponse{ConvertedObjects: r.Objects, Result: metav1.Status{Status: metav1.StatusSuccess}}
	})).Named("conversion-test")
	for _, tc := range []struct {
		name       string
		body       string
		chunked    bool
		wantHTTP   int
		wantUID    string
		wantStatus string
		wantMsg    string
		wantResult string
		wantObject string
	}{
		{name: "success echoes uid and objects byte for byte", body: review("u-1", "x/v2"),
			wantHTTP: 200, wantUID: "u-1", wantStatus: metav1.StatusSuccess, wantResult: ResultConverted, wantObject: obj},
		{name: "failure is HTTP 200", body: review("u-2", "x/fail"),
			wantHTTP: 200, wantUID: "u-2", wantStatus: metav1.StatusFailure, wantMsg: "cannot", wantResult: ResultError},
		{name: "panic is a failure with the uid", body: review("u-3", "x/panic"),
			wantHTTP: 200, wantUID: "u-3", wantStatus: metav1.StatusFailure, wantMsg: "internal error converting to x/panic", wantResult: ResultError},
		{name: "no response is a failure", body: review("u-4", "x/nil"),
			wantHTTP: 200, wantUID: "u-4", wantStatus: metav1.StatusFailure, wantMsg: "no response", wantResult: ResultError},
		{name: "no request", body: `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}`,
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: "has no request", wantResult: ResultBadRequest},
		{name: "no uid", body: strings.Replace(review("u", "x/v2"), `"uid":"u"`, `"uid":""`, 1),
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: "request has no uid", wantResult: ResultBadRequest},
		{name: "no type meta", body: `{"request":{"uid":"u"}}`,
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: `got apiVersion "" kind ""`, wantResult: ResultBadRequest},
		{name: "v1beta1 is not what the CRD registers", body: strings.Replace(review("u", "x/v2"), "apiextensions.k8s.io/v1", "apiextensions.k8s.io/v1beta1", 1),
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: `got apiVersion "apiextensions.k8s.io/v1beta1"`, wantResult: ResultBadRequest},
		{name: "duplicate names", body: strings.Replace(review("u", "x/v2"), `"uid":"u"`, `"uid":"u","uid":"v"`, 1),
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: "duplicate object member name", wantResult: ResultBadRequest},
		{name: "not JSON", body: `{`,
			wantHTTP: 400, wantStatus: metav1.StatusFailure, wantMsg: "not a ConversionReview", wantResult: ResultBadRequest},
		{name: "too large by its length", body: tooLarge("apiextensions.k8s.io/v1", "ConversionReview"),
			wantHTTP: 413, wantStatus: metav1.StatusFailure, wantMsg: "larger than 7340032 bytes", wantResult: ResultBadRequest},
		{name: "too large while streamed", body: tooLarge("apiextensions.k8s.io/v1", "ConversionReview"), chunked: true,
			wantHTTP: 413, wantStatus: metav1.StatusFailure, wantMsg: "larger than 7340032 bytes", wantResult: ResultBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count("conversion-test", tc.wantResult)
			panics := testutil.ToFloat64(conversionmetrics.WebhookPanics.WithLabelValues())
			rec := post(h, http.MethodPost, "application/json", []byte(tc.body), tc.chunked)
			var out apixv1.ConversionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("HTTP %d, not a ConversionReview (%v): %s", rec.Code, err, rec.Body.String())
			}
			if rec.Code != tc.wantHTTP || out.APIVersion != "apiextensions.k8s.io/v1" || out.Kind != "ConversionReview" {
				t.Errorf("HTTP %d %s %s, want %d apiextensions.k8s.io/v1 ConversionReview", rec.Code, out.APIVersion, out.Kind, tc.wantHTTP)
			}
			r := out.Response
			if string(r.UID) != tc.wantUID || r.Result.Status != tc.wantStatus || !strings.Contains(r.Result.Message, tc.wantMsg) {
				t.Errorf("uid %q status %q message %q; want %q %q containing %q", r.UID, r.Result.Status, r.Result.Message, tc.wantUID, tc.wantStatus, tc.wantMsg)
			}
			if tc.wantObject != "" && (len(r.ConvertedObjects) != 1 || string(r.ConvertedObjects[0].Raw) != tc.wantObject) {
				t.Errorf("objects %v, want [%s]", r.ConvertedObjects, tc.wantObject)
			}
			if got := count("conversion-test", tc.wantResult) - before; got != 1 {
				t.Errorf("%s counted %v times, want 1", tc.wantResult, got)
			}
			wantPanics := map[bool]float64{true: 1, false: 0}[strings.Contains(tc.name, "panic")]
			if got := testutil.ToFloat64(conversionmetrics.WebhookPanics.WithLabelValues()) - panics; got != wantPanics {
				t.Errorf("controller_runtime_conversion_webhook_panics_total grew by %v, want %v", got, wantPanics)
			}
		})
	}
}

// TestConversionPanicNotRecovered: fuzzing turns recovery off so a panic
// fails the run.
func TestConversionPanicNotRecovered(t *testing.T) {
	h := NewConversion(converterFunc(func(*apixv1.ConversionRequest) *apixv1.ConversionResponse { panic("boom") })).WithRecoverPanic(false)
	defer func() {
		if recover() == nil {
			t.Error("the panic was recovered")
		}
	}()
	post(h, http.MethodPost, "application/json",
		[]byte(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","objects":[]}}`), false)
}

// FuzzUnmarshal: any body either decodes to a review with a request or is
// refused with a 4xx status; nothing panics.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":null,"oldObject":[1,{}]}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object": {"a":"\u00e9\"}"} ,"oldObject":"x","options":7}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ar, code, err := Unmarshal(body)
		// The objects are slices of the body: what they hold must be what
		// go-json-experiment's own RawExtension decoding copies.
		plain := &admissionv1.AdmissionReview{}
		if plainErr := jsonv2.Unmarshal(body, plain); plainErr != nil && err == nil {
			t.Fatalf("accepted what plain decoding refuses (%v)", plainErr)
		}
		if err != nil {
			if code < 400 || code > 499 || ar != nil {
				t.Fatalf("error %v with status %d and review %v", err, code, ar)
			}
			return
		}
		if ar.Request == nil || code != 0 {
			t.Fatalf("accepted a review without a request (status %d)", code)
		}
		if !reflect.DeepEqual(ar, plain) {
			t.Fatalf("decoded\n%+v\nplain decoding gives\n%+v", ar.Request, plain.Request)
		}
	})
}

// TestUnmarshalObjectsInTheBody: the objects are the body's own bytes, each
// value exactly (no surrounding space, escapes as sent), and growing one
// cannot overwrite what follows it in the body.
func TestUnmarshalObjectsInTheBody(t *testing.T) {
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",` +
		`"object" : {"a":"\u00e9\"}"} ,"oldObject":{"b":[1, 2]},"options":null}}`)
	ar, _, err := Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := ar.Request
	if got, want := string(req.Object.Raw), `{"a":"\u00e9\"}"}`; got != want {
		t.Errorf("object %s, want %s", got, want)
	}
	if got, want := string(req.OldObject.Raw), `{"b":[1, 2]}`; got != want {
		t.Errorf("oldObject %s, want %s", got, want)
	}
	if req.Options.Raw != nil {
		t.Errorf("options %q, want none for null (as RawExtension.UnmarshalJSON)", req.Options.Raw)
	}
	if cap(req.Object.Raw) != len(req.Object.Raw) {
		t.Errorf("object capacity %d past its %d bytes: an append would write into the body", cap(req.Object.Raw), len(req.Object.Raw))
	}
	before := string(body)
	_ = append(req.Object.Raw, "garbage"...)
	if string(body) != before || string(req.OldObject.Raw) != `{"b":[1, 2]}` {
		t.Errorf("appending to the object changed the body: %s", body)
	}

	conv, err := UnmarshalConversion([]byte(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview",` +
		`"request":{"uid":"u","desiredAPIVersion":"v","objects":[{"x":1}, {"y":"\n"} ,null]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range conv.Request.Objects {
		got = append(got, string(o.Raw))
	}
	if want := []string{`{"x":1}`, `{"y":"\n"}`, ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("conversion objects %q, want %q", got, want)
	}
}

// TestFailureSeriesStartAtZero: a named webhook exports its error and
// bad_request counts before any request, so rate() and the chart's
// error-ratio alert see the first failure.
func TestFailureSeriesStartAtZero(t *testing.T) {
	NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})).Named("zero-start")
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "fsm_webhooks_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["webhook"] == "zero-start" && m.GetCounter().GetValue() == 0 {
				found[l["result"]] = true
			}
		}
	}
	for _, r := range []string{ResultError, ResultBadRequest} {
		if !found[r] {
			t.Errorf("fsm_webhooks_requests_total{webhook=\"zero-start\",result=%q} not exported at 0", r)
		}
	}
}

// TestCompressedBody: a compressed body (curl --compressed, a proxy) is
// refused as what it is, a 415 naming the Content-Encoding, by both review
// types before any handler runs; without the check it was decoded as JSON
// and refused for "invalid character '\x1f'", the gzip magic byte.
func TestCompressedBody(t *testing.T) {
	reached := false
	handlers := map[string]http.Handler{
		"admission": NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			reached = true
			return admission.Allowed("")
		})),
		"conversion": NewConversion(converterFunc(func(*apixv1.ConversionRequest) *apixv1.ConversionResponse {
			reached = true
			return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusSuccess}}
		})),
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",` + request + `}`)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for kind, h := range handlers {
		for _, tc := range []struct {
			encoding string
			want     int
			message  string
		}{
			{"gzip", http.StatusUnsupportedMediaType, `Content-Encoding "gzip" is not supported: send the review uncompressed`},
			{"br", http.StatusUnsupportedMediaType, `Content-Encoding "br" is not supported`},
		} {
			t.Run(kind+"/"+tc.encoding, func(t *testing.T) {
				reached = false
				req := httptest.NewRequest(http.MethodPost, "/x", bytes.NewReader(gz.Bytes()))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Content-Encoding", tc.encoding)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tc.want || reached || !strings.Contains(rec.Body.String(), tc.message) {
					t.Fatalf("status %d body %q reached %v; want %d containing %q", rec.Code, rec.Body.String(), reached, tc.want, tc.message)
				}
			})
		}
	}
	// identity is no encoding, whatever its case (content codings are
	// case-insensitive): the review is served.
	for _, identity := range []string{"identity", "Identity"} {
		reached = false
		req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",`+request+`}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", identity)
		rec := httptest.NewRecorder()
		handlers["admission"].ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !reached {
			t.Fatalf("%s: status %d body %q reached %v", identity, rec.Code, rec.Body.String(), reached)
		}
	}
}

type ctxConverterFunc func(context.Context, *apixv1.ConversionRequest) *apixv1.ConversionResponse

func (f ctxConverterFunc) Convert(ctx context.Context, r *apixv1.ConversionRequest) *apixv1.ConversionResponse {
	return f(ctx, r)
}

// TestConversionContextEndsWithRequest: the Converter gets the request's
// context, done once the client (the apiserver, at its timeout) closes the
// connection, so a long review can stop instead of converting for nobody.
func TestConversionContextEndsWithRequest(t *testing.T) {
	done := make(chan error, 1)
	h := NewConversion(ctxConverterFunc(func(ctx context.Context, _ *apixv1.ConversionRequest) *apixv1.ConversionResponse {
		select {
		case <-ctx.Done():
			done <- nil
		case <-time.After(10 * time.Second):
			done <- errors.New("the converter's context was not done 10 s after the client went away")
		}
		return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusFailure, Message: "stopped"}}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	body := `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"x/v2","objects":[{"apiVersion":"x/v1","kind":"K"}]}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("setup: the request was answered before the client gave up")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
