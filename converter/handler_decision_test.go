package converter

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// TestConvertEveryVersionPair: whatever version an object comes in, it
// comes back in the desired one, apiVersion and kind set to it (the
// apiserver refuses a converted object in any other version), its name and
// namespace kept, in the order sent.
func TestConvertEveryVersionPair(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	hub := presetWith(t, nil)
	for _, from := range []string{"v1alpha1", "v1alpha2", "v1alpha3"} {
		src := hub
		if from != "v1alpha3" {
			out, msg := convertOne(t, h, group+"/"+from, hub)
			if out == nil {
				t.Fatalf("preset to %s: %s", from, msg)
			}
			src = out
		}
		for _, to := range []string{"v1alpha1", "v1alpha2", "v1alpha3"} {
			resp := h.Convert(context.Background(), &apixv1.ConversionRequest{DesiredAPIVersion: group + "/" + to,
				Objects: []runtime.RawExtension{{Raw: src}, {Raw: []byte(v1alpha1Obj)}, {Raw: []byte(v1alpha3Obj)}}})
			if resp.Result.Status != metav1.StatusSuccess || len(resp.ConvertedObjects) != 3 {
				t.Fatalf("%s to %s: %s %q, %d objects", from, to, resp.Result.Status, resp.Result.Message, len(resp.ConvertedObjects))
			}
			for i, want := range []string{"fsm-mesh-config", "a", "c"} {
				var got metav1.PartialObjectMetadata
				if err := json.Unmarshal(resp.ConvertedObjects[i].Raw, &got); err != nil {
					t.Fatalf("%s to %s, object %d: %v", from, to, i, err)
				}
				if got.APIVersion != group+"/"+to || got.Kind != "MeshConfig" || got.Name != want {
					t.Errorf("%s to %s, object %d: %s %s %s/%s, want %s/%s MeshConfig %s", from, to, i,
						got.APIVersion, got.Kind, got.Namespace, got.Name, group, to, want)
				}
			}
		}
	}
}

// TestConvertRefusals: what the converter cannot convert fails the whole
// review, the message naming the object (index, apiVersion,
// namespace/name when it has a name) and what is wrong with it.
func TestConvertRefusals(t *testing.T) {
	// The scheme `fsm-webhooks serve` gives it also holds Kubernetes' own
	// groups; their versions are still not this converter's.
	wide := meshScheme(t)
	if err := clientgoscheme.AddToScheme(wide); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(wide, group, logr.Discard())
	for _, tc := range []struct {
		name, desired string
		objects       []string
		want          []string
		notWant       []string
	}{
		{"desired version of another group the scheme knows", "v1", nil,
			[]string{`desiredAPIVersion "v1" is not served by this converter (serves config.flomesh.io/v1alpha1, config.flomesh.io/v1alpha2, config.flomesh.io/v1alpha3)`}, nil},
		{"desired version not parseable", "config.flomesh.io/v1alpha3/x", nil,
			[]string{`desiredAPIVersion "config.flomesh.io/v1alpha3/x" is not served`}, nil},
		{"no kind, already in the desired version", "config.flomesh.io/v1alpha3",
			[]string{`{"apiVersion":"config.flomesh.io/v1alpha3","metadata":{"name":"k","namespace":"fsm"},"spec":{}}`},
			[]string{"object 0 (config.flomesh.io/v1alpha3 fsm/k): apiVersion and kind are required"}, nil},
		{"no apiVersion", "config.flomesh.io/v1alpha3",
			[]string{`{"kind":"MeshConfig","metadata":{"name":"k"}}`},
			[]string{"object 0 ( /k): apiVersion and kind are required"}, nil},
		{"a kind of the group's that is not served", "config.flomesh.io/v1alpha3",
			[]string{`{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshRootCertificate","metadata":{"name":"r"}}`},
			[]string{`object 0 (config.flomesh.io/v1alpha1 /r): apiVersion "config.flomesh.io/v1alpha1" kind "MeshRootCertificate" is not served by this converter (serves config.flomesh.io/v1alpha1, config.flomesh.io/v1alpha2, config.flomesh.io/v1alpha3)`}, nil},
		{"an object without a name is named by its index only", "config.flomesh.io/v1alpha1",
			[]string{v1alpha1Obj, `{"apiVersion":"example.com/v1","kind":"MeshConfig","metadata":{"namespace":"fsm"}}`},
			[]string{`object 1: apiVersion "example.com/v1" is not in group config.flomesh.io`}, []string{"object 0", "object 1 ("}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objects []runtime.RawExtension
			for _, o := range tc.objects {
				objects = append(objects, runtime.RawExtension{Raw: []byte(o)})
			}
			resp := h.Convert(context.Background(), &apixv1.ConversionRequest{DesiredAPIVersion: tc.desired, Objects: objects})
			if resp.Result.Status != metav1.StatusFailure || len(resp.ConvertedObjects) != 0 {
				t.Fatalf("result %s %q with %d objects, want a failure", resp.Result.Status, resp.Result.Message, len(resp.ConvertedObjects))
			}
			for _, w := range tc.want {
				if !strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q lacks %q", resp.Result.Message, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q has %q", resp.Result.Message, w)
				}
			}
		})
	}
}
