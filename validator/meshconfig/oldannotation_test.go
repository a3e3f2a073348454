package meshconfig

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

const oldVersionAnnotationDetail = `only a config.flomesh.io/v1alpha1 or v1alpha2 object carries this annotation (the converter takes it off on the way up): ` +
	`on a v1alpha3 object, which holds spec.image, spec.misc and spec.connector, the converter ignores it, so what it holds (the v1alpha3 ` +
	`spec.image, spec.ingress and other fields an old version's write stored while conversion was off kept in it) is in no version's view; ` +
	`remove the annotation (first moving into the spec what this object should keep of the data it holds), ` +
	`or, for an object stored that way, write it back once through v1alpha2 (kubectl get meshconfigs.v1alpha2.config.flomesh.io <name> -o json | kubectl replace -f -), ` +
	`which stores the v1alpha3 object it stands for`

// TestV1alpha3WriteWithOldVersionAnnotation: conversion.flomesh.io/v1alpha3-fields
// and v1alpha3-json belong on v1alpha1/v1alpha2 objects. On a v1alpha3 object
// the converter ignores them (convert.ReadAsRelabelled: it holds spec.image,
// misc, connector), so every v1alpha1/v1alpha2 read shows the spec's image
// registry, ingress and localProxyMode, and the data the annotation holds is
// in no version's view. Such a write is refused at the annotation; an UPDATE
// that keeps it only warns, unless the stored object is an old version's
// write stored relabelled (whose annotation the converter reads) and the
// spec changes under it.
func TestV1alpha3WriteWithOldVersionAnnotation(t *testing.T) {
	edit := func(h *v1alpha3.MeshConfig) {
		h.Spec.Image.Registry = "registry.example.com/mirror"
		h.Spec.Sidecar.LocalProxyMode = v1alpha3.LocalProxyModePodIP
	}
	fieldsAnn := map[string]string{lossless.AnnotationV1Alpha3Fields: `{"sidecar":{"localProxyMode":"Localhost"}}`}
	jsonAnn := map[string]string{lossless.AnnotationV1Alpha3JSON: `[]`}
	for name, ann := range map[string]map[string]string{"v1alpha3-fields": fieldsAnn, "v1alpha3-json": jsonAnn} {
		t.Run(name, func(t *testing.T) {
			obj := objectJSON(t, V1alpha3, edit, ann)

			// What the converter makes of it: the old-version view, and
			// the v1alpha3 object an unchanged write of that view stores.
			down := &v1alpha2.MeshConfig{}
			if err := convert.FromHub(obj, func() conversion.Hub { return &v1alpha3.MeshConfig{} }, down); err != nil {
				t.Fatal(err)
			}
			back, err := hubJSON(down)
			if err != nil {
				t.Fatal(err)
			}
			var stored v1alpha3.MeshConfig
			if err := json.Unmarshal(back, &stored); err != nil {
				t.Fatal(err)
			}
			if stored.Spec.Image.Registry != "registry.example.com/mirror" || stored.Spec.Ingress == nil || stored.Spec.Sidecar.LocalProxyMode != v1alpha3.LocalProxyModePodIP {
				t.Fatalf("an unchanged write through v1alpha2 stores image.registry %q, ingress %v, localProxyMode %q: the converter read the annotation",
					stored.Spec.Image.Registry, stored.Spec.Ingress, stored.Spec.Sidecar.LocalProxyMode)
			}

			key := lossless.AnnotationV1Alpha3Fields
			if _, ok := ann[key]; !ok {
				key = lossless.AnnotationV1Alpha3JSON
			}
			want := `metadata.annotations[` + key + `]: Invalid value: `
			r := Validate(V1alpha3, obj)
			if len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0].Error(), want) || !strings.HasSuffix(r.Errors[0].Error(), oldVersionAnnotationDetail) {
				t.Fatalf("CREATE: errors %q, want one %q...%q", messages(r.Errors), want, oldVersionAnnotationDetail)
			}

			// UPDATE: keeping it on a stored v1alpha3 object warns, spec
			// edited or not (the converter ignored it already); adding it
			// denies, as does a v1alpha3 spec written under it on an old
			// version's write stored relabelled, whose annotation the
			// converter read until then.
			relabelled := func(b []byte) []byte {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				m["apiVersion"] = Group + "/" + V1alpha3
				out, _ := json.Marshal(m)
				return out
			}(objectJSON(t, V1alpha2, edit, ann))
			if !convert.ReadAsRelabelled(relabelled) {
				t.Fatal("setup: the converter does not read the relabelled v1alpha2 write as one")
			}
			relabel := func(b []byte) []byte {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				m["metadata"].(map[string]any)["labels"] = map[string]any{"team": "mesh"}
				out, _ := json.Marshal(m)
				return out
			}
			specEdited := objectJSON(t, V1alpha3, func(h *v1alpha3.MeshConfig) { edit(h); h.Spec.Sidecar.LogLevel = "debug" }, ann)
			for _, tc := range []struct {
				name     string
				obj, old []byte
				wantErrs int
			}{
				{"metadata edited", relabel(obj), obj, 0},
				{"spec edited", specEdited, obj, 0},
				{"v1alpha3 spec written over a relabelled write", obj, relabelled, 1},
				{"annotation added", obj, objectJSON(t, V1alpha3, edit, nil), 1},
			} {
				r := ValidateUpdate(V1alpha3, tc.obj, tc.old)
				if len(r.Errors) != tc.wantErrs || len(r.Warnings) != 1-tc.wantErrs {
					t.Errorf("UPDATE, %s: errors %q, warnings %q; want %d errors", tc.name, messages(r.Errors), r.Warnings, tc.wantErrs)
				}
			}
		})
	}
}
