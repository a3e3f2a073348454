package lossless

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

type dlistener struct {
	Enabled *bool  `json:"enabled,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Port    int32  `json:"port"`
}

type dsection struct {
	Listener  *dlistener  `json:"listener,omitempty"`
	Listeners []dlistener `json:"listeners,omitempty"`
}

type embedded struct {
	Name string `json:"name,omitempty"`
}

type dkept struct {
	embedded
	Section *dsection `json:"section,omitempty"`
}

var testDefaults = &Defaults{Properties: map[string]*Defaults{
	"name": {Default: "n"},
	"section": {Properties: map[string]*Defaults{
		"listener": {Default: map[string]any{"port": int64(80)}, Properties: map[string]*Defaults{
			"enabled": {Default: true}, "mode": {Default: "auto"}, "port": {Default: int64(80)},
		}},
		"listeners": {Items: &Defaults{Properties: map[string]*Defaults{"mode": {Default: "auto"}}}},
	}},
}}

// TestStashDefaultedRoundTrip: what omitempty drops and the schema defaults
// is written anyway, so defaulting on the way back restores it as it was.
func TestStashDefaultedRoundTrip(t *testing.T) {
	in := dkept{embedded: embedded{}, Section: &dsection{Listener: &dlistener{}, Listeners: []dlistener{{Port: 1}}}}
	meta := &metav1.ObjectMeta{}
	if err := StashDefaulted(meta, "k", &in, true, testDefaults); err != nil {
		t.Fatal(err)
	}
	const want = `{"name":"","section":{"listener":{"enabled":null,"mode":"","port":0},"listeners":[{"mode":"","port":1}]}}`
	if got := meta.Annotations["k"]; got != want {
		t.Errorf("annotation %s, want %s", got, want)
	}
	var out dkept
	if _, err := UnstashDefaulted(meta, "k", &out, testDefaults); err != nil {
		t.Fatal(err)
	}
	if out.Name != "" || out.Section.Listener.Enabled != nil || out.Section.Listener.Mode != "" || out.Section.Listeners[0].Mode != "" {
		t.Errorf("round trip changed the data: %+v %+v", out, *out.Section)
	}
}

// TestUnstashDefaulted: inside the objects the annotation has, what they
// lack gets its default (an object default, then its fields' defaults);
// keys match case-insensitively, as encoding/json matches them; absent
// objects stay absent.
func TestUnstashDefaulted(t *testing.T) {
	meta := &metav1.ObjectMeta{Annotations: map[string]string{"k": `{"Section":{"listeners":[{}]}}`}}
	var out dkept
	if _, err := UnstashDefaulted(meta, "k", &out, testDefaults); err != nil {
		t.Fatal(err)
	}
	l := out.Section.Listener
	if out.Name != "n" || l == nil || l.Port != 80 || l.Mode != "auto" || !ptr.Deref(l.Enabled, false) || out.Section.Listeners[0].Mode != "auto" {
		t.Errorf("got %+v, dsection %+v, dlistener %+v", out, *out.Section, l)
	}
	meta = &metav1.ObjectMeta{Annotations: map[string]string{"k": `{"name":"x"}`}}
	out = dkept{}
	if _, err := UnstashDefaulted(meta, "k", &out, testDefaults); err != nil || out.Section != nil {
		t.Errorf("an absent dsection got %+v (%v)", out.Section, err)
	}
	meta = &metav1.ObjectMeta{Annotations: map[string]string{"k": `{"section":{"listener":{"port":"x"}}}`}}
	if _, err := UnstashDefaulted(meta, "k", &dkept{}, testDefaults); err == nil {
		t.Error("a mistyped annotation decoded")
	}
}
