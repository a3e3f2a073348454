package lossless

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationV1Alpha3JSON is set on v1alpha1 and v1alpha2 objects. It holds
// the places where the v1alpha3 JSON they were converted from differs from
// what converting them back writes: what the Go types cannot tell apart
// (an absent section and an empty one, an explicit zero and none) and
// values they rewrite (quantities in canonical form, a number's spelling).
// AnnotationV1Alpha3Fields keeps the data; this keeps its exact JSON, so an
// unchanged write through an old version stores the v1alpha3 object it read.
const AnnotationV1Alpha3JSON = "conversion.flomesh.io/v1alpha3-json"

// Change is one place where two JSON objects differ. Path is the chain of
// object keys from the top (arrays are compared whole); Was is the value in
// the source object and Got the one conversion produced, each nil where the
// key is absent.
type Change struct {
	Path []string
	Was  json.RawMessage
	Got  json.RawMessage
}

// changeJSON is Change as written in the annotation: "was"/"got" are left
// out where the key is absent, so an explicit null stays distinct.
type changeJSON struct {
	Path []string        `json:"path"`
	Was  json.RawMessage `json:"was,omitempty"`
	Got  json.RawMessage `json:"got,omitempty"`
}

// Changes lists where converted JSON must be put back to its source's.
type Changes []Change

// Diff returns where the spec of roundTripped (source converted to another
// version and back) differs from source's, both JSON objects, each read as
// the apiserver serves it: defaulted by spec (nil: none), so a field the
// schema gives anyway is no difference. Only the spec is compared: the
// typed conversion carries the metadata, and the two versions' apiVersion
// differs by design. An absent spec counts as an empty one.
func Diff(source, roundTripped []byte, spec *Defaults) (Changes, error) {
	a, err := decodeObject(source)
	if err != nil {
		return nil, fmt.Errorf("decoding the source object: %w", err)
	}
	b, err := decodeObject(roundTripped)
	if err != nil {
		return nil, fmt.Errorf("decoding the converted object: %w", err)
	}
	as, bs := specOf(a), specOf(b)
	// Defaults are Go values (int64(53)); sameJSON compares them with the
	// numbers read.
	spec.Apply(as)
	spec.Apply(bs)
	var out Changes
	if err := diff([]string{"spec"}, as, bs, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// specOf is o's spec, an empty object when o has none.
func specOf(o map[string]any) map[string]any {
	if s, ok := o["spec"].(map[string]any); ok {
		return s
	}
	return map[string]any{}
}

func diff(path []string, a, b any, out *Changes) error {
	am, aIsObj := a.(map[string]any)
	bm, bIsObj := b.(map[string]any)
	if !aIsObj || !bIsObj {
		if sameJSON(a, b) {
			return nil
		}
		return out.add(path, a, true, b, true)
	}
	keys := slices.Collect(maps.Keys(am))
	for k := range bm {
		if _, ok := am[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := append(slices.Clip(path), k)
		va, inA := am[k]
		vb, inB := bm[k]
		var err error
		if inA && inB {
			err = diff(p, va, vb, out)
		} else {
			err = out.add(p, va, inA, vb, inB)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Changes) add(path []string, was any, hasWas bool, got any, hasGot bool) error {
	ch := Change{Path: path}
	var err error
	if hasWas {
		if ch.Was, err = json.Marshal(was); err != nil {
			return err
		}
	}
	if hasGot {
		if ch.Got, err = json.Marshal(got); err != nil {
			return err
		}
	}
	*c = append(*c, ch)
	return nil
}

// Apply puts obj (a JSON object converted from an object c was recorded
// against) back to the source's JSON wherever obj, read as Diff read it (its
// spec defaulted by spec), still holds what conversion produced then. A
// value that differs was edited since, and the edit wins. With changes to
// apply, the result is that defaulted object (the apiserver defaults it
// anyway); without, obj as it is.
func (c Changes) Apply(obj []byte, spec *Defaults) ([]byte, error) {
	if len(c) == 0 {
		return obj, nil
	}
	o, err := decodeObject(obj)
	if err != nil {
		return nil, err
	}
	spec.Apply(o["spec"])
	for _, ch := range c {
		if len(ch.Path) == 0 {
			continue
		}
		parent, ok := LookupObject(o, ch.Path[:len(ch.Path)-1])
		if !ok {
			continue // the place is gone: edited since
		}
		key := ch.Path[len(ch.Path)-1]
		cur, present := parent[key]
		if present != (ch.Got != nil) {
			continue
		}
		if present {
			got, err := DecodeJSON(ch.Got)
			if err != nil {
				return nil, err
			}
			if !sameJSON(cur, got) {
				// Edited since: the section as written, the fields the
				// old version showed included.
				continue
			}
		}
		if ch.Was == nil {
			delete(parent, key)
			continue
		}
		was, err := DecodeJSON(ch.Was)
		if err != nil {
			return nil, err
		}
		parent[key] = was
	}
	return json.Marshal(o)
}

// LookupObject is the object at path under o, if every step is an object.
func LookupObject(o map[string]any, path []string) (map[string]any, bool) {
	for _, k := range path {
		next, ok := o[k].(map[string]any)
		if !ok {
			return nil, false
		}
		o = next
	}
	return o, true
}

// KeepChanges records c in AnnotationV1Alpha3JSON of obj, or removes the
// annotation when there is nothing to record.
func KeepChanges(obj metav1.Object, c Changes) error {
	list := make([]changeJSON, len(c))
	for i, ch := range c {
		list[i] = changeJSON(ch)
	}
	return Stash(obj, AnnotationV1Alpha3JSON, list, len(c) > 0)
}

// TakeChanges removes AnnotationV1Alpha3JSON from obj and returns what it
// records (nothing when obj has none).
func TakeChanges(obj metav1.Object) (Changes, error) {
	var list []changeJSON
	found, err := Unstash(obj, AnnotationV1Alpha3JSON, &list)
	if err != nil || !found {
		return nil, err
	}
	out := make(Changes, 0, len(list))
	for i, ch := range list {
		// Diff records nothing else: metadata is the typed conversion's.
		if len(ch.Path) < 2 || ch.Path[0] != "spec" {
			return nil, fmt.Errorf("annotation %s is not valid: item %d: path %q is not a field under spec", AnnotationV1Alpha3JSON, i, ch.Path)
		}
		out = append(out, Change(ch))
	}
	return out, nil
}

// sameJSON reports whether two decoded JSON values are the same JSON: a
// number is compared by its spelling, so 1.50 is not 1.5.
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !sameJSON(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if na, ok := numberText(a); ok {
		nb, ok := numberText(b)
		return ok && na == nb
	}
	return a == b
}

// numberText is how encoding/json writes the number v.
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return n.String(), true
	case int64, float64:
		b, err := json.Marshal(n)
		return string(b), err == nil
	}
	return "", false
}

func decodeObject(raw []byte) (map[string]any, error) {
	v, err := DecodeJSON(raw)
	if err != nil {
		return nil, err
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return o, nil
}
