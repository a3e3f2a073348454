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
