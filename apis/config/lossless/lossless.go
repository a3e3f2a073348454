// Package lossless keeps the data one MeshConfig version cannot hold in an
// annotation of the converted object, so converting back restores it and any
// A → B → A round trip is the identity.
//
// The annotation value is JSON shaped like the spec of the version the data
// belongs to (paths as in that version), so it reads naturally in kubectl.
// Sections equal to what conversion fills in anyway are left out, so an
// object that never carried such data gets no annotation at all.
package lossless

import (
	"encoding/json"
	"fmt"
	"reflect"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// AnnotationV1Alpha3Fields is set on v1alpha1 and v1alpha2 objects. It
	// holds the v1alpha3 data they cannot hold (v1alpha3-only fields, and for
	// v1alpha1 the v1alpha2 ones and sampledFraction strings that are not
	// plain numbers).
	AnnotationV1Alpha3Fields = "conversion.flomesh.io/v1alpha3-fields"

	// AnnotationV1Alpha2Fields is set on v1alpha3 objects. It holds the
	// v1alpha1/v1alpha2 fields v1alpha3 dropped (sidecar.sidecarClass,
	// sidecar.initContainerImage, sidecar.sidecarDrivers), which are the same
	// in both older versions.
	AnnotationV1Alpha2Fields = "conversion.flomesh.io/v1alpha2-fields"
)

// Stash writes v as JSON into annotation key of obj. When keep is false it
// removes the annotation instead, so stale data never outlives a conversion.
func Stash(obj metav1.Object, key string, v any, keep bool) error {
	return StashDefaulted(obj, key, v, keep, nil)
}

// StashDefaulted is Stash for an annotation that UnstashDefaulted reads with
// the same d: every field d defaults that omitempty would leave out is
// written anyway (a nil pointer as null), so defaulting on the way back
// changes nothing Stash wrote.
func StashDefaulted(obj metav1.Object, key string, v any, keep bool, d *Defaults) error {
	annotations := obj.GetAnnotations()
	if !keep {
		if _, ok := annotations[key]; ok {
			delete(annotations, key)
			if len(annotations) == 0 {
				annotations = nil
			}
			obj.SetAnnotations(annotations)
		}
		return nil
	}
	raw, err := json.Marshal(v)
	if err == nil && d != nil {
		var tree any
		if tree, err = DecodeJSON(raw); err == nil {
			if err = d.explicit(reflect.ValueOf(v), tree); err == nil {
				raw, err = json.Marshal(tree)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("encoding annotation %s: %w", key, err)
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[key] = string(raw)
	obj.SetAnnotations(annotations)
	return nil
}

// Unstash decodes annotation key of obj into v and removes it from obj.
// found is false when obj has no such annotation (v is left untouched).
// Unknown JSON fields are ignored so a newer converter's annotation stays
// readable after a rollback.
func Unstash(obj metav1.Object, key string, v any) (found bool, err error) {
	return UnstashDefaulted(obj, key, v, nil)
}

// UnstashDefaulted is Unstash that first gives the fields the annotation
// lacks inside the objects it has their defaults from d (Defaults.Apply),
// as the apiserver would had the data been written to the version d
// describes. v must point to a zero value.
func UnstashDefaulted(obj metav1.Object, key string, v any, d *Defaults) (found bool, err error) {
	annotations := obj.GetAnnotations()
	raw, ok := annotations[key]
	if !ok {
		return false, nil
	}
	if err := unmarshalDefaulted([]byte(raw), v, d); err != nil {
		// Reported as decoding the annotation as written reports it, so
		// the message is encoding/json's own whether or not d is set.
		reflect.ValueOf(v).Elem().SetZero()
		if err := json.Unmarshal([]byte(raw), v); err != nil {
			return true, fmt.Errorf("annotation %s is not valid: %w", key, err)
		}
		return true, fmt.Errorf("annotation %s is not valid: %w", key, err)
	}
	delete(annotations, key)
	if len(annotations) == 0 {
		annotations = nil
	}
	obj.SetAnnotations(annotations)
	return true, nil
}

// PruneDefaults sets every pointer field of the struct *v that is
// semantically equal to the same field of *defaults to nil, leaving only the
// sections that carry information. Embedded structs count as part of *v:
// their pointer fields are sections too.
func PruneDefaults[T any](v, defaults *T) {
	eachSection(reflect.ValueOf(v).Elem(), reflect.ValueOf(defaults).Elem(), func(f, d reflect.Value) {
		if !f.IsNil() && apiequality.Semantic.DeepEqual(f.Interface(), d.Interface()) {
			f.SetZero()
		}
	})
}

// FillDefaults sets every nil pointer field of the struct *v (embedded
// structs included) to the same field of *defaults, which the caller must not
// reuse.
func FillDefaults[T any](v, defaults *T) {
	eachSection(reflect.ValueOf(v).Elem(), reflect.ValueOf(defaults).Elem(), func(f, d reflect.Value) {
		if f.IsNil() {
			f.Set(d)
		}
	})
}

// IsEmpty reports whether every pointer field of the struct *v (embedded
// structs included) is nil.
func IsEmpty[T any](v *T) bool {
	empty := true
	vv := reflect.ValueOf(v).Elem()
	eachSection(vv, vv, func(f, _ reflect.Value) {
		empty = empty && f.IsNil()
	})
	return empty
}

// eachSection calls fn with every pointer field of the struct v and the same
// field of d (a value of the same type), descending into embedded structs.
func eachSection(v, d reflect.Value, fn func(f, d reflect.Value)) {
	t := v.Type()
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Pointer:
			fn(f, d.Field(i))
		case t.Field(i).Anonymous && f.Kind() == reflect.Struct:
			eachSection(f, d.Field(i), fn)
		}
	}
}

// unmarshalDefaulted decodes raw into v after d.Apply (d nil: as written).
func unmarshalDefaulted(raw []byte, v any, d *Defaults) error {
	if d == nil {
		return json.Unmarshal(raw, v)
	}
	tree, err := DecodeJSON(raw)
	if err != nil {
		return err
	}
	d.Apply(tree)
	if raw, err = json.Marshal(tree); err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
