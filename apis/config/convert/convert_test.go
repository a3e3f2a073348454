package convert_test

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

func newHub() conversion.Hub { return &v1alpha3.MeshConfig{} }

// TestToHubRefusesWhatTheHubCannotHold: the apiserver stores a converted
// object without validating it, and one that no longer decodes as v1alpha3
// fails every read in the other versions, so an annotation that puts back a
// value of the wrong type fails the conversion (the write) instead.
func TestToHubRefusesWhatTheHubCannotHold(t *testing.T) {
	spoke := &v1alpha1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "m", Annotations: map[string]string{
		lossless.AnnotationV1Alpha3JSON: `[{"path":["spec","featureFlags","enableEgressPolicy"],"was":"yes","got":false}]`,
	}}}
	_, err := convert.ToHub(spoke, newHub())
	if err == nil || !strings.Contains(err.Error(), lossless.AnnotationV1Alpha3JSON+" puts back a value the hub version cannot hold") {
		t.Fatalf("err = %v, want the annotation refused", err)
	}
}

// TestFromHubToHub: the hub JSON comes back as it was, absent sections,
// explicit zeros and a quantity's spelling included.
func TestFromHubToHub(t *testing.T) {
	source := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m"},` +
		`"spec":{"image":{},"misc":{},"connector":{},"sidecar":{"maxDataPlaneConnections":0,"resources":{"limits":{"cpu":"1000m"}}}}}`)
	down := &v1alpha1.MeshConfig{}
	if err := convert.FromHub(source, newHub, down); err != nil {
		t.Fatal(err)
	}
	if down.Annotations[lossless.AnnotationV1Alpha3JSON] == "" {
		t.Fatalf("no %s on %v", lossless.AnnotationV1Alpha3JSON, down.Annotations)
	}
	back, err := convert.ToHub(down, &v1alpha3.MeshConfig{TypeMeta: metav1.TypeMeta{APIVersion: "config.flomesh.io/v1alpha3", Kind: "MeshConfig"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := lossless.Diff(source, back, v1alpha3.SpecDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 0 {
		t.Errorf("back differs from the source at %+v:\n%s", c, back)
	}
	for _, want := range []string{`"maxDataPlaneConnections":0`, `"cpu":"1000m"`} {
		if !strings.Contains(string(back), want) {
			t.Errorf("back lacks %s:\n%s", want, back)
		}
	}
	if strings.Contains(string(back), `"traffic"`) {
		t.Errorf("back has a traffic section the source did not:\n%s", back)
	}
}

// TestFromHubRelabelledV1alpha1Write: under conversion strategy None a
// write through v1alpha1 is stored relabelled v1alpha3, unconverted. Read
// down, it is the hub object it stands for: the annotation's data is back at
// its v1alpha3 path and the sampledFraction number converts as v1alpha1's
// does, the string the annotation kept winning only while it is still that
// number (an edit through v1alpha1 wins).
func TestFromHubRelabelledV1alpha1Write(t *testing.T) {
	for _, tc := range []struct {
		name, number, want string
	}{
		{"unchanged", "0.5", `"sampledFraction":"0.50"`},
		{"edited through v1alpha1", "0.7", `"sampledFraction":"0.7"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
				`"` + lossless.AnnotationV1Alpha3Fields + `":"{\"image\":{\"registry\":\"r.example.com\"},\"observability\":{\"tracing\":{\"sampledFraction\":\"0.50\"}}}"}},` +
				`"spec":{"image":{"registry":"flomesh"},"misc":{},"connector":{},"observability":{"tracing":{"sampledFraction":` + tc.number + `}}}}`)
			down := &v1alpha1.MeshConfig{}
			if err := convert.FromHub(stored, newHub, down); err != nil {
				t.Fatal(err)
			}
			if f := down.Spec.Observability.Tracing.SampledFraction; f == nil || fmt.Sprint(*f) != tc.number {
				t.Errorf("v1alpha1 sampledFraction = %v, want %s", f, tc.number)
			}
			up, err := convert.ToHub(down, newHub())
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{tc.want, `"registry":"r.example.com"`} {
				if !strings.Contains(string(up), want) {
					t.Errorf("stored back without %s:\n%s", want, up)
				}
			}
			if strings.Contains(string(up), "conversion.flomesh.io/v1alpha3-") {
				t.Errorf("stored back with an old version's annotation:\n%s", up)
			}
		})
	}
}

// TestFromHubBrokenAnnotationStillReads: a hub object whose old-version
// annotation does not parse (edited by hand) is read as it is, as before the
// relabelled-write restore: it must not fail every read of the old versions.
func TestFromHubBrokenAnnotationStillReads(t *testing.T) {
	stored := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
		`"` + lossless.AnnotationV1Alpha3Fields + `":"{not json"}},` +
		`"spec":{"image":{"registry":"flomesh"},"misc":{},"connector":{},"observability":{"tracing":{"sampledFraction":"0.5"}}}}`)
	down := &v1alpha1.MeshConfig{}
	if err := convert.FromHub(stored, newHub, down); err != nil {
		t.Fatalf("a broken annotation failed the read: %v", err)
	}
	if f := down.Spec.Observability.Tracing.SampledFraction; f == nil || *f != 0.5 {
		t.Errorf("v1alpha1 sampledFraction = %v, want 0.5", f)
	}
}

// TestReadAsRelabelled: only an object an old version's write can have
// stored (no hub-only section: the apiserver prunes the write by that
// version's schema) is read through its old-version annotations. A v1alpha3
// object (spec.image, misc and connector are required) carrying a stale one,
// as a converter from before AnnotationV1Alpha3JSON existed stored it, is
// read as the v1alpha3 object it is.
func TestReadAsRelabelled(t *testing.T) {
	fields := `"` + lossless.AnnotationV1Alpha3Fields + `":"{}"`
	exact := `"` + lossless.AnnotationV1Alpha3JSON + `":"[]"`
	obj := func(annotations, spec string) []byte {
		return []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` + annotations + `}},"spec":{` + spec + `}}`)
	}
	for _, tc := range []struct {
		name string
		obj  []byte
		want bool
	}{
		{"v1alpha3 object", obj("", `"image":{},"misc":{},"connector":{}`), false},
		{"relabelled write with v1alpha3-fields", obj(fields, `"sidecar":{}`), true},
		{"relabelled write with v1alpha3-json", obj(exact, `"sidecar":{}`), true},
		{"relabelled write without spec", obj(exact, ``), true},
		{"relabelled write, sampledFraction number", obj("", `"observability":{"tracing":{"sampledFraction":0.5}}`), true},
		{"relabelled write, remoteLogging sampledFraction number", obj("", `"observability":{"remoteLogging":{"sampledFraction":0.5}}`), true},
		{"relabelled write, negative sampledFraction number", obj("", `"observability":{"tracing":{"sampledFraction":-0.5}}`), true},
		{"relabelled write, sampledFraction number 9", obj("", `"observability":{"tracing":{"sampledFraction":9}}`), true},
		{"v1alpha3 object, sampledFraction string", obj("", `"observability":{"tracing":{"sampledFraction":"0.5"}}`), false},
		{"v1alpha3 object with a stale v1alpha3-json", obj(exact, `"image":{},"misc":{},"connector":{}`), false},
		{"v1alpha3 object with a stale v1alpha3-fields", obj(fields, `"image":{},"misc":{},"connector":{}`), false},
		{"stale annotation, one hub-only section", obj(exact, `"warmup":{}`), false},
		{"not JSON", []byte(`{`), false},
	} {
		if got := convert.ReadAsRelabelled(tc.obj); got != tc.want {
			t.Errorf("%s: ReadAsRelabelled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFromHubRelabelledV1alpha2WriteKeepsItsString: a relabelled write
// through v1alpha2 holds sampledFraction as the string v1alpha3 has; read
// down it stays that string (only v1alpha1's number is converted), whatever
// the annotation remembers at that path.
func TestFromHubRelabelledV1alpha2WriteKeepsItsString(t *testing.T) {
	stored := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
		`"` + lossless.AnnotationV1Alpha3Fields + `":"{\"image\":{\"registry\":\"r.example.com\"}}"}},` +
		`"spec":{"observability":{"tracing":{"sampledFraction":"0.25"},"remoteLogging":{"sampledFraction":"high"}}}}`)
	down := &v1alpha2.MeshConfig{}
	if err := convert.FromHub(stored, newHub, down); err != nil {
		t.Fatal(err)
	}
	obs := down.Spec.Observability
	for name, got := range map[string]*string{"tracing": obs.Tracing.SampledFraction, "remoteLogging": obs.RemoteLogging.SampledFraction} {
		want := map[string]string{"tracing": "0.25", "remoteLogging": "high"}[name]
		if got == nil || *got != want {
			t.Errorf("%s sampledFraction = %v, want %q", name, got, want)
		}
	}
	up, err := convert.ToHub(down, newHub())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sampledFraction":"0.25"`, `"sampledFraction":"high"`, `"registry":"r.example.com"`} {
		if !strings.Contains(string(up), want) {
			t.Errorf("stored back without %s:\n%s", want, up)
		}
	}
}

// TestFromHubRelabelledV1alpha1WriteKeepsV1alpha2Fields: the annotation of a
// write through v1alpha1 also keeps the v1alpha2 fields v1alpha1 lacks (TLS
// versions, DNS proxy); stored relabelled and read down, they are back at
// their path and survive the round trip.
func TestFromHubRelabelledV1alpha1WriteKeepsV1alpha2Fields(t *testing.T) {
	stored := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
		`"` + lossless.AnnotationV1Alpha3Fields + `":"{\"sidecar\":{\"tlsMinProtocolVersion\":\"TLSv1_2\",\"localDNSProxy\":{\"enable\":true}}}"}},` +
		`"spec":{"observability":{"tracing":{"sampledFraction":0.5}}}}`)
	down := &v1alpha1.MeshConfig{}
	if err := convert.FromHub(stored, newHub, down); err != nil {
		t.Fatal(err)
	}
	up, err := convert.ToHub(down, newHub())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tlsMinProtocolVersion":"TLSv1_2"`, `"localDNSProxy":{"enable":true`, `"sampledFraction":"0.5"`} {
		if !strings.Contains(string(up), want) {
			t.Errorf("stored back without %s:\n%s", want, up)
		}
	}
}

// TestFromHubIgnoresAStrayExactAnnotation: a v1alpha3 object carrying an
// AnnotationV1Alpha3JSON of its own (stored by a converter from before it
// existed) is read down as the object it is: the annotation the old version
// gets is worked out from the object alone, so its quantity's spelling
// still comes back, whatever the stray copy says.
func TestFromHubIgnoresAStrayExactAnnotation(t *testing.T) {
	stored := []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig","metadata":{"name":"m","annotations":{` +
		`"` + lossless.AnnotationV1Alpha3JSON + `":"[{\"path\":[\"spec\",\"sidecar\",\"resources\",\"limits\",\"cpu\"],\"was\":\"1000m\",\"got\":\"1\"}]"}},` +
		`"spec":{"image":{},"misc":{},"connector":{},"sidecar":{"resources":{"limits":{"cpu":"1000m"}}}}}`)
	down := &v1alpha1.MeshConfig{}
	if err := convert.FromHub(stored, newHub, down); err != nil {
		t.Fatal(err)
	}
	up, err := convert.ToHub(down, newHub())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(up), `"cpu":"1000m"`) {
		t.Errorf("stored back without the quantity as written:\n%s", up)
	}
}
