package meshconfig

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"
	openapierrors "k8s.io/kube-openapi/pkg/validation/errors"
	openapispec "k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	openapivalidate "k8s.io/kube-openapi/pkg/validation/validate"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// The apiserver validates a write against the schema of the version it was
// sent in, then stores what the conversion webhook made of it without
// validating that. A v1alpha1/v1alpha2 write can so store a v1alpha3 object
// its own schema refuses (a section v1alpha3 lacked, edited through the old
// version, comes back with the zero values the old version showed, such as
// traffic.interceptionMode ""), which a v1alpha3 client then cannot write
// back. The chart's v1alpha3 schema (the structural part: types, enums,
// required fields, bounds; the CRD has no CEL rules) is checked here on the
// object the write is stored as, with the defaults the apiserver gives it on
// read.
var hubSchema = sync.OnceValues(func() (*openapivalidate.SchemaValidator, error) {
	crds, err := chart.CRDs()
	if err != nil {
		return nil, err
	}
	for _, crd := range crds {
		if crd.Spec.Group != Group || crd.Spec.Names.Kind != Kind {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Name != V1alpha3 || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			// JSONSchemaProps and spec.Schema share the JSON Schema
			// wire form; the x-kubernetes-* extensions are kept as
			// extensions, which validation ignores (an int-or-string then
			// has no type to check).
			raw, err := json.Marshal(v.Schema.OpenAPIV3Schema)
			if err != nil {
				return nil, err
			}
			var s openapispec.Schema
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("the chart's %s schema: %w", V1alpha3, err)
			}
			return openapivalidate.NewSchemaValidator(&s, nil, "", strfmt.Default), nil
		}
	}
	return nil, fmt.Errorf("the chart has no %s/%s %s schema", Group, V1alpha3, Kind)
})

// storedSchemaErrors are the v1alpha3 schema's errors under spec for hub,
// the JSON of a v1alpha3 object as the converter stores it, once the
// apiserver's read defaults are applied. Sorted by path, so that two
// results compare.
func storedSchemaErrors(hub []byte) (field.ErrorList, error) {
	sv, err := hubSchema()
	if err != nil {
		return nil, err
	}
	// Integers as int64, as the apiserver decodes them: kube-openapi
	// takes a float64 above 2^53 for a non-integer.
	var obj map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(hub, &obj); err != nil {
		return nil, err
	}
	specObj, _ := obj["spec"].(map[string]any)
	if specObj == nil {
		specObj = map[string]any{}
	}
	// As the apiserver reads a stored object: nulls dropped (no field of
	// the schema is nullable), then the schema's defaults.
	dropNulls(specObj)
	v1alpha3.SpecDefaults.Apply(specObj)
	obj = map[string]any{"spec": specObj} // metadata is the apiserver's to check
	errs := schemaErrors(obj, sv.Validate(obj).Errors)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
	return errs, nil
}

// schemaErrors turns kube-openapi's errors on obj into the field errors the
// apiserver writes for them, each with the value found at its path. An
// anyOf failure comes as a message without a field beside one error per
// branch; only the field errors are kept when there are any.
func schemaErrors(obj any, errs []error) field.ErrorList {
	var specific, generic field.ErrorList
	var walk func(error)
	walk = func(err error) {
		// kube-openapi's own tree, walked node by node: errors.As would
		// skip a CompositeError's siblings.
		switch e := err.(type) { //nolint:errorlint // see above
		case *openapierrors.CompositeError:
			for _, c := range e.Errors {
				walk(c)
			}
		case *openapierrors.Validation:
			specific = append(specific, validationError(obj, e))
		default:
			generic = append(generic, genericError(err))
		}
	}
	for _, err := range errs {
		walk(err)
	}
	if len(specific) > 0 {
		return dedupe(specific)
	}
	return dedupe(generic)
}

// validationError is the field error for one failed schema rule.
func validationError(obj any, v *openapierrors.Validation) *field.Error {
	p := schemaPath(v.Name)
	switch v.Code() {
	case openapierrors.RequiredFailCode:
		return field.Required(p, "")
	case openapierrors.EnumFailCode:
		values := make([]string, 0, len(v.Values))
		for _, x := range v.Values {
			values = append(values, fmt.Sprint(x))
		}
		return field.NotSupported(p, v.Value, values)
	}
	// kube-openapi's value is a type name for a type error; the value
	// itself says more.
	value, _ := valueAt(obj, v.Name)
	// Its message starts with the path it names, in its own form.
	msg, _ := strings.CutPrefix(v.Error(), v.Name+" ")
	if v.Code() == openapierrors.InvalidTypeCode {
		return field.TypeInvalid(p, value, msg)
	}
	return field.Invalid(p, value, msg)
}

// genericError places a kube-openapi error that names no field (an anyOf
// or format failure) at the path its message starts with, quoted, if any.
func genericError(err error) *field.Error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, `"`); ok {
		if name, detail, ok := strings.Cut(rest, `"`); ok && strings.HasPrefix(name, "spec") {
			return field.Invalid(schemaPath(name), "", strings.TrimSpace(detail))
		}
	}
	return field.Invalid(field.NewPath("spec"), "", msg)
}

func dedupe(errs field.ErrorList) field.ErrorList {
	var out field.ErrorList
	for _, e := range errs {
		if !containsError(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// valueAt is the value at kube-openapi's path name ("spec.xs[2].name") in
// obj, if there is one. The path joins map keys with dots, so a key holding
// dots ("example.com/gpu") is matched as the longest key present.
func valueAt(obj any, name string) (any, bool) {
	cur, parts := obj, strings.Split(name, ".")
	for len(parts) > 0 {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		found := false
		for j := len(parts); j > 0 && !found; j-- {
			if strings.Contains(strings.Join(parts[:j-1], "."), "[") {
				continue // an index ends a key: only the last part may hold one
			}
			key, indexes, _ := strings.Cut(strings.Join(parts[:j], "."), "[")
			v, ok := m[key]
			if !ok {
				continue
			}
			found, cur, parts = true, v, parts[j:]
			for indexes != "" {
				var n int
				if _, err := fmt.Sscanf(indexes, "%d]", &n); err != nil {
					return nil, false
				}
				l, ok := cur.([]any)
				if !ok || n < 0 || n >= len(l) {
					return nil, false
				}
				cur = l[n]
				_, indexes, _ = strings.Cut(indexes, "[")
			}
		}
		if !found {
			return nil, false
		}
	}
	return cur, true
}

// schemaPath reads kube-openapi's "spec.traffic.interceptionMode" or
// "spec.xs[2].name" as a field path.
func schemaPath(name string) *field.Path {
	var p *field.Path
	for part := range strings.SplitSeq(name, ".") {
		key, index, hasIndex := strings.Cut(part, "[")
		if p == nil {
			p = field.NewPath(key)
		} else {
			p = p.Child(key)
		}
		for hasIndex {
			var n int
			var rest string
			if _, err := fmt.Sscanf(index, "%d]", &n); err != nil {
				p = p.Key(strings.TrimSuffix(index, "]"))
				break
			}
			p = p.Index(n)
			_, rest, hasIndex = strings.Cut(index, "[")
			index = rest
		}
	}
	return p
}

// storedSchemaProblems checks a v1alpha1/v1alpha2 write (obj) as the
// v1alpha3 object it is stored as against the v1alpha3 schema. Errors that
// the conversion annotations bring are returned as annotation errors, named
// at the annotation (the converter never writes one that does: what it
// restores was read from a stored object). The others are the write's own
// (fields its version shows empty, a section v1alpha3 lacked): the
// apiserver stores them and FSM admitted them, so they are returned apart,
// for a warning.
func storedSchemaProblems(version string, obj []byte) (annotationErrs, own field.ErrorList) {
	src := NewSpoke(version)
	if src == nil || kjson.UnmarshalCaseSensitivePreserveInts(obj, src) != nil {
		return nil, nil // the view's rules say why
	}
	annotations := maps.Clone(src.GetAnnotations())
	with, err := hubJSON(src.DeepCopyObject().(SpokeObject))
	if err != nil {
		return nil, nil // hubFieldProblems reports a malformed annotation
	}
	withErrs, err := storedSchemaErrors(with)
	if err != nil || len(withErrs) == 0 {
		return nil, nil
	}
	applied := false
	for _, k := range []string{lossless.AnnotationV1Alpha3Fields, lossless.AnnotationV1Alpha3JSON} {
		if _, ok := annotations[k]; ok {
			applied = true
			delete(annotations, k)
		}
	}
	if !applied {
		return nil, withErrs
	}
	bare := src.DeepCopyObject().(SpokeObject)
	bare.SetAnnotations(annotations)
	without, err := hubJSON(bare)
	if err != nil {
		return nil, withErrs
	}
	withoutErrs, err := storedSchemaErrors(without)
	if err != nil {
		return nil, withErrs
	}
	var brought []string
	for _, e := range withErrs {
		if containsError(withoutErrs, e) {
			own = append(own, e)
		} else {
			brought = append(brought, e.Error())
		}
	}
	if len(brought) > 0 {
		at, value := hubJSONPath, src.GetAnnotations()[lossless.AnnotationV1Alpha3JSON]
		if _, ok := src.GetAnnotations()[lossless.AnnotationV1Alpha3JSON]; !ok {
			at, value = hubFieldsPath, src.GetAnnotations()[lossless.AnnotationV1Alpha3Fields]
		}
		annotationErrs = field.ErrorList{field.Invalid(at, value, fmt.Sprintf(
			"must be what the converter wrote when this object was read, or be removed: with %s applied, the %s object this write is stored as fails the %s schema: %s",
			appliedAnnotations(src.GetAnnotations()), V1alpha3, V1alpha3, strings.Join(brought, "; ")))}
	}
	return annotationErrs, own
}

// storedSchemaWarnings are the warnings for the write's own schema errors
// of the v1alpha3 object it is stored as, one per error so that each stays
// whole (internal/warning). Why (the apiserver does not check a converted
// object; a v1alpha3 copy of it, a backup or a GitOps source, cannot be
// created again): validator README, which a warning has no room for.
func storedSchemaWarnings(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, warning.Fit(fmt.Sprintf("the %s/%s object this write is stored as fails the %s schema: %s", Group, V1alpha3, V1alpha3, e.Error()),
			fmt.Sprintf("; set it, or write it as %s", V1alpha3)))
	}
	return out
}

// dropNulls removes null-valued keys from every object in v.
func dropNulls(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			dropNulls(e)
		}
	case []any:
		for _, e := range x {
			dropNulls(e)
		}
	}
}
