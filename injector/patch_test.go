package injector

import (
	"bytes"
	"encoding/json"
	"testing"

	evanjsonpatch "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// assertEncodesAsLibrary: encodePatch writes ops byte for byte as
// json.Marshal does through jsonpatch.Operation's MarshalJSON (what
// admission.Response.Complete would send).
func assertEncodesAsLibrary(t *testing.T, ops []jsonpatch.Operation) {
	t.Helper()
	want, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodePatch(ops)
	if err != nil {
		t.Fatalf("encodePatch: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodePatch:\n%s\njson.Marshal(ops):\n%s", got, want)
	}
}

func TestEncodePatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []jsonpatch.Operation
	}{
		{"add null", []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/labels", nil)}},
		{"replace null", []jsonpatch.Operation{jsonpatch.NewOperation("replace", "/spec/hostname", nil)}},
		{"remove", []jsonpatch.Operation{jsonpatch.NewOperation("remove", "/metadata/annotations/a", nil)}},
		{"test with a value", []jsonpatch.Operation{jsonpatch.NewOperation("test", "/a", "b")}},
		{"remove with a value (written, as the library does)", []jsonpatch.Operation{jsonpatch.NewOperation("remove", "/a", 1)}},
		{"HTML and escapes in strings", []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/annotations/x~1<y>", "a&b <c> \u2028 \"q\"")}},
		{"typed container, generic map, empty", []jsonpatch.Operation{
			jsonpatch.NewOperation("add", "/spec/containers/0", &corev1.Container{Name: "sidecar", Image: "flomesh/pipy", Args: []string{"--a"}}),
			jsonpatch.NewOperation("add", "/metadata/labels", map[string]any{"b": "2", "a": []any{1.5, true, nil}}),
			jsonpatch.NewOperation("replace", "/spec/volumes", []any{}),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { assertEncodesAsLibrary(t, tc.ops) })
	}
}

// TestPatched: the response carries the encoded patch with its type, as
// Response.Complete would set them, and no patch when there is nothing to
// change.
func TestPatched(t *testing.T) {
	ops := []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{"a": "b"})}
	resp := patched(ops)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch ||
		string(resp.Patch) != `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]` || len(resp.Patches) != 0 {
		t.Fatalf("patched: allowed %v, type %v, patch %s, %d ops left for Complete", resp.Allowed, resp.PatchType, resp.Patch, len(resp.Patches))
	}
	if resp := patched(nil); !resp.Allowed || resp.PatchType != nil || resp.Patch != nil {
		t.Fatalf("patched(nil): allowed %v, type %v, patch %s", resp.Allowed, resp.PatchType, resp.Patch)
	}
	if resp := patched([]jsonpatch.Operation{jsonpatch.NewOperation("add", "/a", func() {})}); resp.Allowed || resp.Result == nil || resp.Result.Code != 500 {
		t.Fatalf("unencodable value: allowed %v, result %v; want refused with 500", resp.Allowed, resp.Result)
	}
}

// TestCreatePatchAppliesToMutated: whatever the container lists became
// (inserted, as Mutate makes them; or removed, reordered or emptied, which
// takes the list diff), the patch applied to the original pod gives the
// mutated one.
func TestCreatePatchAppliesToMutated(t *testing.T) {
	cs := func(names ...string) []corev1.Container {
		var out []corev1.Container
		for _, n := range names {
			out = append(out, corev1.Container{Name: n, Image: n + ":1"})
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		orig, mut []corev1.Container
	}{
		{"inserted", cs("a", "b"), cs("a", "sidecar", "b")},
		{"removed", cs("a", "b"), cs("a")},
		{"reordered", cs("a", "b"), cs("b", "a")},
		{"replaced", cs("a", "b"), cs("a", "c")},
		{"emptied", cs("a"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := &corev1.Pod{Spec: corev1.PodSpec{Containers: tc.orig}}
			mut := &corev1.Pod{Spec: corev1.PodSpec{Containers: tc.mut}}
			ops, err := CreatePatch(orig, mut)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := encodePatch(ops)
			if err != nil {
				t.Fatal(err)
			}
			patch, err := evanjsonpatch.DecodePatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			from, _ := json.Marshal(orig)
			out, err := patch.Apply(from)
			if err != nil {
				t.Fatalf("applying %s: %v", raw, err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(&got)
			want, _ := json.Marshal(mut)
			if !bytes.Equal(gotJSON, want) {
				t.Fatalf("patch %s gives\n%s\nwant\n%s", raw, gotJSON, want)
			}
		})
	}
}
