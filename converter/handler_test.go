package converter

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

const group = fsmnames.ConfigGroup

func meshScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, v1alpha2.AddToScheme, v1alpha3.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func reviewBody(t testing.TB, uid, desired string, objects ...string) []byte {
	t.Helper()
	req := apixv1.ConversionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
		Request:  &apixv1.ConversionRequest{UID: k8stypes.UID("uid-" + uid), DesiredAPIVersion: desired},
	}
	for _, o := range objects {
		req.Request.Objects = append(req.Request.Objects, runtime.RawExtension{Raw: []byte(o)})
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serve(t testing.TB, h http.Handler, method, contentType string, body []byte) (*httptest.ResponseRecorder, *apixv1.ConversionReview) {
	t.Helper()
	r := httptest.NewRequest(method, fsmnames.ConverterPath, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	review := &apixv1.ConversionReview{}
	if err := json.Unmarshal(w.Body.Bytes(), review); err != nil {
		t.Fatalf("response is not a ConversionReview (HTTP %d): %q", w.Code, w.Body.String())
	}
	return w, review
}

const (
	v1alpha1Obj = `{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig","metadata":{"name":"a","namespace":"fsm"},` +
		`"spec":{"sidecar":{"enablePrivilegedInitContainer":false,"sidecarDisabledMTLS":false,"sidecarClass":"pipy"},` +
		`"observability":{"tracing":{"enable":true,"sampledFraction":0.25}}}}`
	v1alpha3Obj = `{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"c","namespace":"fsm"},` +
		`"spec":{"observability":{"tracing":{"enable":true,"sampledFraction":"0.50"}},"misc":{"repoServerImage":"x:1"},` +
		`"image":{"registry":"flomesh","tag":"latest","pullPolicy":"IfNotPresent"},"connector":{"lb":{},"DO_NOT_EDIT_viaGateway":"","viaGateway":{}}}}`
)

// TestServeHTTP converts through the production request path
// (reviewhttp.NewConversion); its checks and failures of the request itself
// are tested in reviewhttp.
func TestServeHTTP(t *testing.T) {
	h := reviewhttp.NewConversion(NewHandler(meshScheme(t), group, logr.Discard()))

	t.Run("object already in the desired version comes back byte for byte", func(t *testing.T) {
		w, review := serve(t, h, http.MethodPost, "application/json", reviewBody(t, "same", "config.flomesh.io/v1alpha3", v1alpha3Obj))
		if w.Code != http.StatusOK || review.Response.Result.Status != metav1.StatusSuccess {
			t.Fatalf("HTTP %d, %+v", w.Code, review.Response.Result)
		}
		if got := string(review.Response.ConvertedObjects[0].Raw); got != v1alpha3Obj {
			t.Errorf("object changed:\n got %s\nwant %s", got, v1alpha3Obj)
		}
		if review.Response.UID != "uid-same" || review.Kind != "ConversionReview" || review.APIVersion != "apiextensions.k8s.io/v1" {
			t.Errorf("uid/type not echoed: uid=%q %s %s", review.Response.UID, review.APIVersion, review.Kind)
		}
	})

	t.Run("v1alpha1 number becomes a v1alpha3 string and legacy fields an annotation", func(t *testing.T) {
		_, review := serve(t, h, http.MethodPost, "application/json", reviewBody(t, "up", "config.flomesh.io/v1alpha3", v1alpha1Obj))
		if review.Response.Result.Status != metav1.StatusSuccess {
			t.Fatalf("%+v", review.Response.Result)
		}
		got := &v1alpha3.MeshConfig{}
		if err := json.Unmarshal(review.Response.ConvertedObjects[0].Raw, got); err != nil {
			t.Fatal(err)
		}
		if got.APIVersion != "config.flomesh.io/v1alpha3" || got.Kind != "MeshConfig" {
			t.Errorf("apiVersion/kind = %s/%s", got.APIVersion, got.Kind)
		}
		if sf := got.Spec.Observability.Tracing.SampledFraction; sf == nil || *sf != "0.25" {
			t.Errorf("sampledFraction = %v, want \"0.25\"", sf)
		}
		if a := got.Annotations[lossless.AnnotationV1Alpha2Fields]; a != `{"sidecar":{"sidecarClass":"pipy"}}` {
			t.Errorf("legacy annotation = %q", a)
		}
		if got.Spec.Image.Registry != v1alpha3.DefaultImageRegistry || got.Spec.Misc != v1alpha3.DefaultMisc() {
			t.Errorf("image not defaulted: %+v", got.Spec.Image)
		}
	})

	t.Run("spoke to spoke goes through the hub", func(t *testing.T) {
		_, review := serve(t, h, http.MethodPost, "application/json", reviewBody(t, "side", "config.flomesh.io/v1alpha2", v1alpha1Obj))
		if review.Response.Result.Status != metav1.StatusSuccess {
			t.Fatalf("%+v", review.Response.Result)
		}
		got := &v1alpha2.MeshConfig{}
		if err := json.Unmarshal(review.Response.ConvertedObjects[0].Raw, got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.Sidecar.SidecarClass != "pipy" || got.Spec.Observability.Tracing.SampledFraction == nil || *got.Spec.Observability.Tracing.SampledFraction != "0.25" {
			t.Errorf("v1alpha2 = %+v", got.Spec)
		}
	})

	t.Run("unknown desired version fails naming it", func(t *testing.T) {
		w, review := serve(t, h, http.MethodPost, "application/json", reviewBody(t, "v9", "config.flomesh.io/v9", v1alpha1Obj))
		if w.Code != http.StatusOK || review.Response.Result.Status != metav1.StatusFailure {
			t.Fatalf("HTTP %d %+v", w.Code, review.Response.Result)
		}
		if msg := review.Response.Result.Message; !strings.Contains(msg, `"config.flomesh.io/v9"`) || !strings.Contains(msg, "config.flomesh.io/v1alpha3") {
			t.Errorf("message %q does not name the version and the served ones", msg)
		}
		if review.Response.UID != "uid-v9" || len(review.Response.ConvertedObjects) != 0 {
			t.Errorf("uid %q, %d objects", review.Response.UID, len(review.Response.ConvertedObjects))
		}
	})

	t.Run("malformed objects fail the whole review with every error", func(t *testing.T) {
		bad1 := `{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig","metadata":{"name":"b1","namespace":"fsm"},"spec":{"observability":{"tracing":{"sampledFraction":"high"}}}}`
		bad2 := `{"apiVersion":"config.flomesh.io/v7","kind":"MeshConfig","metadata":{"name":"b2"}}`
		_, review := serve(t, h, http.MethodPost, "application/json", reviewBody(t, "bad", "config.flomesh.io/v1alpha3", v1alpha1Obj, bad1, bad2, `[1]`))
		if review.Response.Result.Status != metav1.StatusFailure || len(review.Response.ConvertedObjects) != 0 {
			t.Fatalf("%+v", review.Response)
		}
		msg := review.Response.Result.Message
		for _, want := range []string{"object 1 (config.flomesh.io/v1alpha1 fsm/b1)", "sampledFraction", "object 2", `"config.flomesh.io/v7"`, "object 3"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "object 0") {
			t.Errorf("message blames the good object: %q", msg)
		}
	})
}

// TestConvertLeavesTheUIDToTheWrapper: Convert is the decision only.
func TestConvertLeavesTheUIDToTheWrapper(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	for _, desired := range []string{"config.flomesh.io/v1alpha3", "config.flomesh.io/v9"} {
		resp := h.Convert(context.Background(), &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: desired, Objects: []runtime.RawExtension{{Raw: []byte(v1alpha1Obj)}}})
		if resp == nil || resp.UID != "" {
			t.Errorf("%s: response %+v, want one without a uid", desired, resp)
		}
	}
}
