package converter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// BenchmarkHandlerPerObject is one ConversionReview with one preset-sized
// MeshConfig through the HTTP handler as served (decode, convert, encode).
func BenchmarkHandlerPerObject(b *testing.B) {
	scheme := e2eScheme(b)
	h := reviewhttp.NewConversion(converter.NewHandler(scheme, v1alpha3.GroupVersion.Group, logr.Discard()))
	hub := preset(b, "bench")
	hub.Spec.Misc.RepoServerImage = "custom:1" // some v1alpha3-only data to keep
	hub.SetGroupVersionKind(v1alpha3.GroupVersion.WithKind("MeshConfig"))
	hubJSON, err := json.Marshal(hub)
	if err != nil {
		b.Fatal(err)
	}
	old := &v1alpha1.MeshConfig{}
	if err := old.ConvertFrom(hub); err != nil {
		b.Fatal(err)
	}
	old.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("MeshConfig"))
	oldJSON, err := json.Marshal(old)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		desired string
		obj     []byte
	}{
		{"v1alpha3-to-v1alpha1", v1alpha1.GroupVersion.String(), hubJSON},
		{"v1alpha3-to-v1alpha2", v1alpha2.GroupVersion.String(), hubJSON},
		{"v1alpha1-to-v1alpha3", v1alpha3.GroupVersion.String(), oldJSON},
		{"v1alpha1-to-v1alpha2", v1alpha2.GroupVersion.String(), oldJSON},
	} {
		body, err := json.Marshal(apixv1.ConversionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
			Request:  &apixv1.ConversionRequest{UID: "bench", DesiredAPIVersion: bc.desired, Objects: []runtime.RawExtension{{Raw: bc.obj}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, fsmnames.ConverterPath, bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"status":"Success"`)) {
					b.Fatalf("HTTP %d: %s", w.Code, w.Body.String())
				}
			}
		})
	}
}

// BenchmarkList1000 lists 1000 MeshConfigs through the apiserver in each
// version: v1alpha3 is the storage version (no webhook call), the others go
// through the converter in one ConversionReview.
func BenchmarkList1000(b *testing.B) {
	env, _ := startConverter(b, logr.Discard())
	createMany(b, env.Client, "bench", 1000)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		list client.ObjectList
	}{
		{"v1alpha3-storage", &v1alpha3.MeshConfigList{}},
		{"v1alpha2-converted", &v1alpha2.MeshConfigList{}},
		{"v1alpha1-converted", &v1alpha1.MeshConfigList{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := env.Client.List(ctx, bc.list, client.InNamespace("bench")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
