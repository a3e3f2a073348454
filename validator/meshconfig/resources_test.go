package meshconfig

import (
	"bytes"
	"testing"
)

// TestResourceQuantityErrors: every quantity of sidecar.resources that does
// not parse is refused at its key with its value, in the order of the keys
// (the same on every call, so that a retried write reads the same), and a
// value that is neither a string nor a number is quoted compactly.
func TestResourceQuantityErrors(t *testing.T) {
	const (
		limits = "spec.sidecar.resources.limits"
		detail = `must be a quantity such as 500m, 2 or 64Mi`
	)
	for _, tc := range []struct {
		name   string
		limits map[string]any
		// spaced: written with blanks inside the value, as a client may.
		spaced bool
		want   []string
	}{{
		name:   "several bad quantities",
		limits: map[string]any{"memory": "x", "cpu": "y", "example.com/e": "z", "example.com/b": "w", "example.com/a": "v", "example.com/d": "t"},
		want: []string{
			limits + `[cpu]: Invalid value: "y": ` + detail,
			limits + `[example.com/a]: Invalid value: "v": ` + detail,
			limits + `[example.com/b]: Invalid value: "w": ` + detail,
			limits + `[example.com/d]: Invalid value: "t": ` + detail,
			limits + `[example.com/e]: Invalid value: "z": ` + detail,
			limits + `[memory]: Invalid value: "x": ` + detail,
		},
	}, {
		name:   "an object",
		limits: map[string]any{"cpu": map[string]any{"a": 1}},
		spaced: true,
		want:   []string{limits + `[cpu]: Invalid value: "{\"a\":1}": ` + detail},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			obj := build(t, preset(t), kv{"spec.sidecar.resources", map[string]any{"limits": tc.limits}})
			if tc.spaced {
				obj = bytes.ReplaceAll(obj, []byte(`{"a":1}`), []byte(`{ "a": 1 }`))
			}
			for range 20 {
				if got := messages(Validate(V1alpha3, obj).Errors); !equal(got, tc.want) {
					t.Fatalf("errors %q, want %q", got, tc.want)
				}
			}
		})
	}
}
