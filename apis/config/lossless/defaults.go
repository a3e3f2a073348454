package lossless

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
)

// Defaults is the part of a CRD's structural schema that defaulting needs:
// a field's `default` and, for objects and arrays, the same for their fields
// and items. Nodes without a default anywhere below them can be left out.
type Defaults struct {
	// Default is the field's default as a JSON value (string, bool, int64,
	// float64, map[string]any, []any), nil for none.
	Default any
	// Properties are an object's fields by JSON name.
	Properties map[string]*Defaults
	// Items describes an array's items.
	Items *Defaults
}

// Apply defaults the decoded JSON value v in place as the apiserver's
// structural defaulting does: inside every object present, a field that is
// absent gets its default, then every field is defaulted in turn (a default
// object included). Unlike the apiserver, an explicit null is kept: it is
// how StashDefaulted writes a nil pointer, which must come back nil. Keys
// match as encoding/json matches them (exactly, else case-insensitively),
// so defaults go where the decoder will read them.
func (d *Defaults) Apply(v any) {
	if d == nil {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for name, p := range d.Properties {
			if p.Default != nil && !hasKey(x, name) {
				x[name] = runtime.DeepCopyJSONValue(p.Default)
			}
		}
		for k, e := range x {
			d.property(k).Apply(e)
		}
	case []any:
		for _, e := range x {
			d.Items.Apply(e)
		}
	}
}

func (d *Defaults) property(k string) *Defaults {
	if p, ok := d.Properties[k]; ok {
		return p
	}
	for name, p := range d.Properties {
		if strings.EqualFold(name, k) {
			return p
		}
	}
	return nil
}

func hasKey(m map[string]any, name string) bool {
	if _, ok := m[name]; ok {
		return true
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// explicit adds to v, the decoded encoding of rv, every field d defaults
// that encoding/json left out (omitempty) with a value other than the
// default, written as its Go value encodes (null for a nil pointer), so that
// Apply on the way back finds it present and leaves it as it was.
func (d *Defaults) explicit(rv reflect.Value, v any) error {
	if d == nil {
		return nil
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if rv.Kind() != reflect.Struct {
			return nil
		}
		for name, p := range d.Properties {
			f, ok := jsonField(rv, name)
			if !ok {
				continue // a field of the schema the Go type does not carry
			}
			e, present := x[name]
			if !present {
				if p.Default == nil {
					continue
				}
				zero, err := json.Marshal(f.Interface())
				if err != nil {
					return err
				}
				def, err := json.Marshal(p.Default)
				if err != nil {
					return err
				}
				if bytes.Equal(zero, def) {
					continue // defaulting restores it as it was
				}
				if e, err = DecodeJSON(zero); err != nil {
					return err
				}
				x[name] = e
			}
			if err := p.explicit(f, e); err != nil {
				return err
			}
		}
	case []any:
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			return nil
		}
		for i := range x {
			if i < rv.Len() {
				if err := d.Items.explicit(rv.Index(i), x[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// jsonField finds the field of struct rv that encoding/json writes as name,
// looking into embedded structs after the struct's own fields (which win).
func jsonField(rv reflect.Value, name string) (reflect.Value, bool) {
	t := rv.Type()
	var embedded []int
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		tagName, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && tagName == "" && sf.Type.Kind() == reflect.Struct {
			embedded = append(embedded, i)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if tagName == "" {
			tagName = sf.Name
		}
		if tagName == name {
			return rv.Field(i), true
		}
	}
	for _, i := range embedded {
		if f, ok := jsonField(rv.Field(i), name); ok {
			return f, true
		}
	}
	return reflect.Value{}, false
}

// DecodeJSON decodes raw keeping numbers as written (json.Number), so
// re-encoding changes none.
func DecodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	// A Decoder leaves trailing data unread.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a single JSON value")
	}
	return v, nil
}
