package lossless

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

type section struct {
	A *string `json:"a,omitempty"`
	B *[]int  `json:"b,omitempty"`
	C int     `json:"c,omitempty"` // not a pointer: never pruned or filled
}

func TestStashUnstash(t *testing.T) {
	obj := &metav1.ObjectMeta{Annotations: map[string]string{"other": "x"}}
	in := section{A: ptr.To("v"), C: 3}
	if err := Stash(obj, "k", in, true); err != nil {
		t.Fatal(err)
	}
	if got := obj.Annotations["k"]; got != `{"a":"v","c":3}` {
		t.Errorf("annotation = %s", got)
	}
	var out section
	found, err := Unstash(obj, "k", &out)
	if err != nil || !found || *out.A != "v" || out.C != 3 {
		t.Fatalf("found=%v err=%v out=%+v", found, err, out)
	}
	if _, ok := obj.Annotations["k"]; ok || obj.Annotations["other"] != "x" {
		t.Errorf("annotations after Unstash: %v", obj.Annotations)
	}
	if found, err := Unstash(obj, "k", &out); found || err != nil {
		t.Errorf("second Unstash: found=%v err=%v", found, err)
	}

	only := &metav1.ObjectMeta{Annotations: map[string]string{"k": "{}"}}
	if err := Stash(only, "k", nil, false); err != nil || only.Annotations != nil {
		t.Errorf("Stash(keep=false) left %v (err %v)", only.Annotations, err)
	}
	bad := &metav1.ObjectMeta{Annotations: map[string]string{"k": "{"}}
	if _, err := Unstash(bad, "k", &out); err == nil || !strings.Contains(err.Error(), "annotation k") {
		t.Errorf("malformed annotation: %v", err)
	}
	if bad.Annotations["k"] != "{" {
		t.Error("a malformed annotation was removed")
	}
	unknown := &metav1.ObjectMeta{Annotations: map[string]string{"k": `{"a":"v","future":1}`}}
	if _, err := Unstash(unknown, "k", &out); err != nil {
		t.Errorf("unknown fields from a newer converter must be tolerated: %v", err)
	}
}

func TestPruneFill(t *testing.T) {
	defaults := func() *section { return &section{A: ptr.To("d"), B: &[]int{}} }
	v := &section{A: ptr.To("d"), B: &[]int{1}, C: 7}
	PruneDefaults(v, defaults())
	if v.A != nil || v.B == nil || v.C != 7 {
		t.Errorf("after prune: %+v", v)
	}
	if IsEmpty(v) {
		t.Error("IsEmpty with B set")
	}
	FillDefaults(v, defaults())
	if v.A == nil || *v.A != "d" || len(*v.B) != 1 {
		t.Errorf("after fill: %+v", v)
	}
	nilVsEmpty := &section{B: nil}
	PruneDefaults(nilVsEmpty, &section{B: &[]int{}})
	if nilVsEmpty.B != nil {
		t.Errorf("nil pointer touched: %+v", nilVsEmpty)
	}
	if !IsEmpty(&section{C: 1}) {
		t.Error("IsEmpty must ignore non-pointer fields")
	}
}

// embedding is how the spoke versions share sections: the embedded struct's
// pointers are sections of the outer struct.
type embedding struct {
	section
	D *string `json:"d,omitempty"`
}

func TestEmbeddedSections(t *testing.T) {
	defaults := func() *embedding { return &embedding{section: section{A: ptr.To("d")}, D: ptr.To("d")} }
	v := &embedding{section: section{A: ptr.To("d"), B: &[]int{1}}, D: ptr.To("d")}
	PruneDefaults(v, defaults())
	if v.A != nil || v.B == nil || v.D != nil {
		t.Errorf("after prune: A=%v B=%v D=%v; want A and D pruned, B kept", v.A, v.B, v.D)
	}
	if IsEmpty(v) {
		t.Error("IsEmpty with the embedded B set")
	}
	v.B = nil
	if !IsEmpty(v) {
		t.Errorf("IsEmpty = false with every section nil: %+v", v)
	}
	FillDefaults(v, defaults())
	if v.A == nil || *v.A != "d" || v.D == nil || *v.D != "d" || v.B != nil {
		t.Errorf("after fill: A=%v B=%v D=%v; want A and D filled, B nil as in defaults", v.A, v.B, v.D)
	}
	obj := &metav1.ObjectMeta{}
	if err := Stash(obj, "k", &embedding{section: section{A: ptr.To("x")}, D: ptr.To("y")}, true); err != nil {
		t.Fatal(err)
	}
	if got := obj.Annotations["k"]; got != `{"a":"x","d":"y"}` {
		t.Errorf("embedded sections are not flattened into the JSON: %s", got)
	}
}
