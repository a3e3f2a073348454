package charttest

import (
	"fmt"
	"sort"
	"strings"
)

// FSMKeyDescription marks the schema nodes MergeFSMKeys adds: keys of FSM's
// chart that this chart accepts, so an FSM values file installs unchanged, and
// does not use (the chart README lists the ones it honours).
const FSMKeyDescription = "FSM v1.5.1 chart value: accepted, not used by fsm-webhooks"

// MergeFSMKeys adds to schema (a values.schema.json document) every key path
// of fsmValues (FSM's chart values) that the schema lacks, in place, and
// returns the added paths, sorted. Objects it adds keep
// additionalProperties false, so a key that belongs neither to FSM nor to this
// chart (a typo) is still rejected. An empty map in FSM's values (podLabels:
// {}) is a free-form map and accepts any key. Existing nodes are never changed:
// hand-written schemas of the keys this chart honours stay as written.
func MergeFSMKeys(schema map[string]any, fsmValues map[string]any) ([]string, error) {
	var added []string
	if err := mergeObject(schema, fsmValues, "", &added); err != nil {
		return nil, err
	}
	sort.Strings(added)
	return added, nil
}

func mergeObject(node map[string]any, values map[string]any, path string, added *[]string) error {
	if len(values) == 0 {
		return nil
	}
	props, _ := node["properties"].(map[string]any)
	if props == nil {
		// A free-form map (additionalProperties a schema or absent) takes any key.
		if ap, ok := node["additionalProperties"].(bool); !ok || ap {
			return nil
		}
		return fmt.Errorf("schema node %q is closed (additionalProperties false) without properties", path)
	}
	for _, k := range sortedKeys(values) {
		p := path + "/" + k
		child, ok := props[k]
		if !ok {
			props[k] = schemaFor(values[k])
			*added = append(*added, p)
			continue
		}
		sub, isMap := values[k].(map[string]any)
		if !isMap {
			continue
		}
		childNode, ok := child.(map[string]any)
		if !ok {
			return fmt.Errorf("schema node %q is not an object schema", p)
		}
		if err := mergeObject(childNode, sub, p, added); err != nil {
			return err
		}
	}
	return nil
}

// schemaFor is the schema of an FSM value nobody here reads: the value's JSON
// type (null allowed, as FSM's templates treat an unset key), nested maps
// closed to typos.
func schemaFor(v any) map[string]any {
	s := map[string]any{"description": FSMKeyDescription}
	switch t := v.(type) {
	case map[string]any:
		s["type"] = "object"
		if len(t) == 0 {
			return s
		}
		s["additionalProperties"] = false
		props := map[string]any{}
		for k, sub := range t {
			props[k] = schemaFor(sub)
		}
		s["properties"] = props
	case []any:
		s["type"] = []any{"array", "null"}
	case bool:
		s["type"] = []any{"boolean", "null"}
	case string:
		s["type"] = []any{"string", "null"}
	case float64, int, int64:
		s["type"] = []any{"number", "null"}
	default:
		// null in FSM's file: its type is not known; take anything.
	}
	return s
}

// FSMKeyPaths lists every key path of values ("/fsm/injector/replicaCount"),
// maps and leaves alike, sorted.
func FSMKeyPaths(values map[string]any) []string {
	var out []string
	var walk func(m map[string]any, path string)
	walk = func(m map[string]any, path string) {
		for k, v := range m {
			p := path + "/" + k
			out = append(out, p)
			if sub, ok := v.(map[string]any); ok {
				walk(sub, p)
			}
		}
	}
	walk(values, "")
	sort.Strings(out)
	return out
}

// SchemaHasPath reports whether schema declares path (as FSMKeyPaths writes
// it) or reaches it through a free-form map.
func SchemaHasPath(schema map[string]any, path string) bool {
	node := schema
	for _, k := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		props, _ := node["properties"].(map[string]any)
		if child, ok := props[k].(map[string]any); ok {
			node = child
			continue
		}
		if props == nil {
			ap, isBool := node["additionalProperties"].(bool)
			return !isBool || ap
		}
		return false
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
