package lossless

import (
	"encoding/json"
	"math/rand"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestChangesRestoreSource: Diff records where a converted object differs
// from its source, Apply puts back the source's JSON there (to the spelling
// of a number), and an object edited since keeps the edit. Where Apply
// changes anything, its result has the schema's defaults, as the apiserver
// gives them anyway.
func TestChangesRestoreSource(t *testing.T) {
	defaults := &Defaults{Properties: map[string]*Defaults{
		"spec": {Properties: map[string]*Defaults{"mode": {Default: "mixed"}, "port": {Default: int64(53)}}},
	}}
	for _, tc := range []struct {
		name          string
		source, back  string // back: source converted and converted back
		converted     string // what Apply gets (back, or back edited)
		want          string
		wantNoChanges bool
	}{{
		name:   "absent section comes back as zero values",
		source: `{"spec":{"a":1}}`, back: `{"spec":{"a":1,"traffic":{"mode":""}}}`,
		converted: `{"spec":{"a":1,"traffic":{"mode":""}}}`,
		want:      `{"spec":{"a":1,"mode":"mixed","port":53}}`,
	}, {
		name:   "explicit zero and empty list dropped",
		source: `{"spec":{"n":0,"los":[]}}`, back: `{"spec":{}}`,
		converted: `{"spec":{}}`,
		want:      `{"spec":{"n":0,"los":[],"mode":"mixed","port":53}}`,
	}, {
		name:   "quantity and number spelling",
		source: `{"spec":{"cpu":"1000m","ratio":1.50}}`, back: `{"spec":{"cpu":"1","ratio":1.5}}`,
		converted: `{"spec":{"cpu":"1","ratio":1.5}}`,
		want:      `{"spec":{"cpu":"1000m","ratio":1.50,"mode":"mixed","port":53}}`,
	}, {
		name:   "explicit null kept apart from absent",
		source: `{"spec":{"p":null}}`, back: `{"spec":{}}`,
		converted: `{"spec":{}}`,
		want:      `{"spec":{"p":null,"mode":"mixed","port":53}}`,
	}, {
		name:   "an edited value wins",
		source: `{"spec":{"cpu":"1000m","n":0}}`, back: `{"spec":{"cpu":"1"}}`,
		converted: `{"spec":{"cpu":"2","n":5}}`,
		want:      `{"spec":{"cpu":"2","n":5,"mode":"mixed","port":53}}`,
	}, {
		name:   "an edited section is kept as written",
		source: `{"spec":{}}`, back: `{"spec":{"traffic":{"mode":"","egress":false}}}`,
		converted: `{"spec":{"traffic":{"mode":"","egress":true}}}`,
		want:      `{"spec":{"traffic":{"mode":"","egress":true},"mode":"mixed","port":53}}`,
	}, {
		name:   "a place gone since is left alone",
		source: `{"spec":{"s":{"n":0}}}`, back: `{"spec":{"s":{}}}`,
		converted: `{"spec":{"s":"replaced"}}`,
		want:      `{"spec":{"s":"replaced","mode":"mixed","port":53}}`,
	}, {
		name:   "a field the schema defaults is no difference",
		source: `{"spec":{"mode":"mixed","port":53}}`, back: `{"spec":{}}`,
		converted:     `{"spec":{}}`,
		want:          `{"spec":{}}`,
		wantNoChanges: true,
	}, {
		name:   "no spec: compared as an empty one",
		source: `{"metadata":{}}`, back: `{"spec":{"traffic":{"mode":""}}}`,
		converted: `{"spec":{"traffic":{"mode":""}}}`,
		want:      `{"spec":{"mode":"mixed","port":53}}`,
	}, {
		name:   "a default is the number written",
		source: `{"spec":{"port":53,"mode":"mixed"}}`, back: `{"spec":{}}`,
		converted:     `{"spec":{}}`,
		want:          `{"spec":{}}`,
		wantNoChanges: true,
	}, {
		name:   "a default is not a number spelled otherwise",
		source: `{"spec":{"port":53.0}}`, back: `{"spec":{}}`,
		converted: `{"spec":{}}`,
		want:      `{"spec":{"port":53.0,"mode":"mixed"}}`,
	}, {
		name:   "metadata, apiVersion and kind are the typed conversion's",
		source: `{"apiVersion":"v3","kind":"K","metadata":{"annotations":{"a":"b"}},"spec":{}}`, back: `{"apiVersion":"v1","kind":"K","metadata":{},"spec":{}}`,
		converted:     `{"apiVersion":"v3","kind":"K","metadata":{},"spec":{}}`,
		want:          `{"apiVersion":"v3","kind":"K","metadata":{},"spec":{}}`,
		wantNoChanges: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Diff([]byte(tc.source), []byte(tc.back), defaults.Properties["spec"])
			if err != nil {
				t.Fatal(err)
			}
			if got := len(c) == 0; got != tc.wantNoChanges {
				t.Errorf("changes %+v, want none: %v", c, tc.wantNoChanges)
			}
			// Through the annotation, as the converted object carries them.
			obj := &metav1.ObjectMeta{}
			if err := KeepChanges(obj, c); err != nil {
				t.Fatal(err)
			}
			if _, ok := obj.Annotations[AnnotationV1Alpha3JSON]; ok == tc.wantNoChanges {
				t.Errorf("annotation present %v with changes %+v", ok, c)
			}
			c, err = TakeChanges(obj)
			if err != nil {
				t.Fatal(err)
			}
			if len(obj.Annotations) != 0 {
				t.Errorf("TakeChanges left %v", obj.Annotations)
			}
			out, err := c.Apply([]byte(tc.converted), defaults.Properties["spec"])
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, out, []byte(tc.want)) {
				t.Errorf("Apply = %s, want %s", out, tc.want)
			}
		})
	}
}

// jsonEqual compares two JSON texts as values, numbers by their spelling.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	va, err := DecodeJSON(a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := DecodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

func TestTakeChangesRefusesMalformed(t *testing.T) {
	for _, ann := range []string{`{"path":["spec"]}`, `[{"was":1}]`, `[{"path":"spec"}]`, `[{"path":["spec"],"was":{}}]`,
		`[{"path":["metadata","annotations"],"was":{"a":"b"}}]`, `[{"path":["apiVersion"],"was":"v1"}]`} {
		obj := &metav1.ObjectMeta{Annotations: map[string]string{AnnotationV1Alpha3JSON: ann}}
		_, err := TakeChanges(obj)
		if err == nil || !strings.Contains(err.Error(), AnnotationV1Alpha3JSON) {
			t.Errorf("%s: err = %v, want one naming the annotation", ann, err)
		}
	}
}

// TestChangesRestoreAnySource: for random JSON objects, putting back what
// Diff records turns the converted object into the source, whatever the
// conversion changed, added or dropped, and through the annotation.
func TestChangesRestoreAnySource(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var value func(depth int) any
	value = func(depth int) any {
		switch n := r.Intn(7); {
		case n == 0 && depth < 4:
			m := map[string]any{}
			for range r.Intn(4) {
				m[string(rune('a'+r.Intn(5)))] = value(depth + 1)
			}
			return m
		case n == 1:
			return []any{value(depth + 1)}
		case n == 2:
			return json.Number([]string{"0", "1", "1.50", "1e3", "-2"}[r.Intn(5)])
		case n == 3:
			return []string{"", "1000m", "x"}[r.Intn(3)]
		case n == 4:
			return r.Intn(2) == 0
		case n == 5:
			return nil
		default:
			return map[string]any{}
		}
	}
	// mutate changes, drops or adds fields anywhere in v, as a lossy
	// conversion might.
	var mutate func(v any) any
	mutate = func(v any) any {
		m, ok := v.(map[string]any)
		if !ok {
			if r.Intn(3) == 0 {
				return value(3)
			}
			return v
		}
		out := map[string]any{}
		for k, e := range m {
			if r.Intn(5) != 0 {
				out[k] = mutate(e)
			}
		}
		if r.Intn(3) == 0 {
			out[string(rune('a'+r.Intn(5)))] = value(2)
		}
		return out
	}
	for i := range 5000 {
		spec := value(0)
		if _, ok := spec.(map[string]any); !ok {
			spec = map[string]any{"a": spec}
		}
		source, _ := json.Marshal(map[string]any{"spec": spec})
		converted, _ := json.Marshal(map[string]any{"spec": mutate(spec)})
		c, err := Diff(source, converted, nil)
		if err != nil {
			t.Fatal(err)
		}
		obj := &metav1.ObjectMeta{}
		if err := KeepChanges(obj, c); err != nil {
			t.Fatal(err)
		}
		if c, err = TakeChanges(obj); err != nil {
			t.Fatal(err)
		}
		back, err := c.Apply(converted, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, back, source) {
			t.Fatalf("iteration %d: %s\nconverted %s\nchanges %+v\nback %s", i, source, converted, c, back)
		}
	}
}
