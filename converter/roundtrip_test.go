package converter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"reflect"
	"strconv"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/diff"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	"sigs.k8s.io/randfill"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter"
)

// roundTripIterations per spoke and direction, as the issue asks for CI.
const roundTripIterations = 10000

type spoke struct {
	name string
	new  func() conversion.Convertible
}

var spokes = []spoke{
	{"v1alpha1", func() conversion.Convertible { return &v1alpha1.MeshConfig{} }},
	{"v1alpha2", func() conversion.Convertible { return &v1alpha2.MeshConfig{} }},
}

// filler fills objects the way apimachinery's round-trip tests do, plus what
// our types need: valid quantities, and sampledFraction strings of every
// kind (canonical numbers, non-canonical numbers, not numbers at all).
func filler(t testing.TB, seed int64) *randfill.Filler {
	t.Helper()
	codecs := serializer.NewCodecFactory(runtime.NewScheme())
	fraction := func(c randfill.Continue) *string {
		f := c.Float64()
		var s string
		switch c.Intn(6) {
		case 0:
			return nil
		case 1:
			s = strconv.FormatFloat(f, 'g', -1, 64)
		case 2:
			s = strconv.FormatFloat(f, 'f', 6, 64) // "0.500000": a number, not canonical
		case 3:
			s = ""
		case 4:
			s = "NaN"
		default:
			s = c.String(8)
		}
		return &s
	}
	funcs := fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, func(serializer.CodecFactory) []any {
		return []any{
			func(q *resource.Quantity, c randfill.Continue) {
				*q = *resource.NewMilliQuantity(c.Int63n(1_000_000), resource.DecimalSI)
			},
			func(s *v1alpha3.TracingSpec, c randfill.Continue) {
				c.FillNoCustom(s)
				s.SampledFraction = fraction(c)
			},
			func(s *v1alpha3.RemoteLoggingSpec, c randfill.Continue) {
				c.FillNoCustom(s)
				s.SampledFraction = fraction(c)
			},
			func(s *v1alpha2.TracingSpec, c randfill.Continue) {
				c.FillNoCustom(s)
				s.SampledFraction = fraction(c)
			},
		}
	})
	return fuzzer.FuzzerFor(funcs, rand.NewSource(seed), codecs).NilChance(0.2).NumElements(0, 2)
}

// viaJSON sends obj through JSON into a fresh object of the same type, as the
// apiserver and the webhook do between conversions.
func viaJSON[T runtime.Object](t testing.TB, obj T, fresh T) T {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("marshal %T: %v", obj, err)
	}
	if err := json.Unmarshal(raw, fresh); err != nil {
		t.Fatalf("unmarshal %T: %v", obj, err)
	}
	return fresh
}

func toHub(t testing.TB, s conversion.Convertible) *v1alpha3.MeshConfig {
	t.Helper()
	before := s.DeepCopyObject()
	hub := &v1alpha3.MeshConfig{}
	if err := s.ConvertTo(hub); err != nil {
		t.Fatalf("ConvertTo: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(before, s) {
		t.Fatalf("ConvertTo modified its source:\n%s", diff.Diff(before, s))
	}
	return viaJSON(t, hub, &v1alpha3.MeshConfig{})
}

func fromHub(t testing.TB, hub *v1alpha3.MeshConfig, s spoke) conversion.Convertible {
	t.Helper()
	before := hub.DeepCopy()
	out := s.new()
	if err := out.ConvertFrom(hub); err != nil {
		t.Fatalf("ConvertFrom: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(before, hub) {
		t.Fatalf("ConvertFrom modified its source:\n%s", diff.Diff(before, hub))
	}
	return viaJSON(t, out, s.new())
}

func randomSpoke(f *randfill.Filler, s spoke) conversion.Convertible {
	obj := s.new()
	f.Fill(obj)
	obj.GetObjectKind().SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind(""))
	return obj
}

// randomHub sometimes carries the v1alpha2-fields annotation a real hub
// object gets when it was written through an old version.
func randomHub(t testing.TB, f *randfill.Filler, r *rand.Rand) *v1alpha3.MeshConfig {
	hub := &v1alpha3.MeshConfig{}
	f.Fill(hub)
	hub.TypeMeta = metav1.TypeMeta{}
	if r.Intn(2) == 0 {
		legacySource := toHub(t, randomSpoke(f, spokes[r.Intn(len(spokes))]))
		if v, ok := legacySource.Annotations[lossless.AnnotationV1Alpha2Fields]; ok {
			if hub.Annotations == nil {
				hub.Annotations = map[string]string{}
			}
			hub.Annotations[lossless.AnnotationV1Alpha2Fields] = v
		}
	}
	return hub
}

func mustEqual(t testing.TB, i int, what string, want, got any) {
	t.Helper()
	if !apiequality.Semantic.DeepEqual(want, got) {
		t.Fatalf("iteration %d: %s is not the identity (-want +got):\n%s", i, what, diff.Diff(want, got))
	}
}

func TestRoundTripSpokeHubSpoke(t *testing.T) {
	for si, s := range spokes {
		t.Run(s.name, func(t *testing.T) {
			f := filler(t, int64(100+si))
			for i := range roundTripIterations {
				orig := randomSpoke(f, s)
				back := fromHub(t, toHub(t, orig), s)
				back.GetObjectKind().SetGroupVersionKind(orig.GetObjectKind().GroupVersionKind())
				mustEqual(t, i, s.name+" → v1alpha3 → "+s.name, orig, back)
			}
		})
	}
}

func TestRoundTripHubSpokeHub(t *testing.T) {
	for si, s := range spokes {
		t.Run(s.name, func(t *testing.T) {
			f := filler(t, int64(200+si))
			r := rand.New(rand.NewSource(int64(300 + si)))
			for i := range roundTripIterations {
				orig := randomHub(t, f, r)
				back := toHub(t, fromHub(t, orig, s))
				mustEqual(t, i, "v1alpha3 → "+s.name+" → v1alpha3", orig, back)
			}
		})
	}
}

// TestRoundTripAnnotatedSpoke covers spoke objects that carry v1alpha3 data
// (what a client reading an old version sees and writes back).
func TestRoundTripAnnotatedSpoke(t *testing.T) {
	for si, s := range spokes {
		t.Run(s.name, func(t *testing.T) {
			f := filler(t, int64(400+si))
			r := rand.New(rand.NewSource(int64(500 + si)))
			for i := range roundTripIterations {
				annotated := fromHub(t, randomHub(t, f, r), s)
				back := fromHub(t, toHub(t, annotated), s)
				mustEqual(t, i, "annotated "+s.name+" → v1alpha3 → "+s.name, annotated, back)
			}
		})
	}
}

// TestRoundTripDetectsLoss proves the comparison can fail: dropping a
// v1alpha3-only field on the way down must not go unnoticed.
func TestRoundTripDetectsLoss(t *testing.T) {
	hub := &v1alpha3.MeshConfig{Spec: v1alpha3.MeshConfigSpec{Misc: v1alpha3.MiscSpec{RepoServerImage: "custom:1"}}}
	down := &v1alpha2.MeshConfig{}
	if err := down.ConvertFrom(hub); err != nil {
		t.Fatal(err)
	}
	delete(down.Annotations, lossless.AnnotationV1Alpha3Fields)
	back := &v1alpha3.MeshConfig{}
	if err := down.ConvertTo(back); err != nil {
		t.Fatal(err)
	}
	if apiequality.Semantic.DeepEqual(hub, back) {
		t.Fatalf("losing the annotation went unnoticed: %+v", back.Spec.Misc)
	}
}

// jsonRoundTripIterations per spoke: each goes through the handler twice.
const jsonRoundTripIterations = 2000

// TestJSONRoundTripHubSpokeHub: through the handler, as the apiserver
// converts, a v1alpha3 object's JSON comes back from either old version as
// it was (numbers by their spelling, absent fields absent), up to what the
// v1alpha3 schema defaults anyway: the typed round trips above compare Go
// values, in which an absent section, an empty one and its zero values are
// alike.
func TestJSONRoundTripHubSpokeHub(t *testing.T) {
	h := converter.NewHandler(e2eScheme(t), v1alpha3.GroupVersion.Group, logr.Discard())
	for si, s := range spokes {
		t.Run(s.name, func(t *testing.T) {
			f := filler(t, int64(600+si))
			r := rand.New(rand.NewSource(int64(700 + si)))
			for i := range jsonRoundTripIterations {
				hub := randomHub(t, f, r)
				hub.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha3.GroupVersion.String(), Kind: "MeshConfig"}
				orig, err := json.Marshal(hub)
				if err != nil {
					t.Fatal(err)
				}
				down := convertJSON(t, h, v1alpha3.GroupVersion.Group+"/"+s.name, orig)
				back := convertJSON(t, h, v1alpha3.GroupVersion.String(), down)
				want, got := servedJSON(t, orig), servedJSON(t, back)
				if !reflect.DeepEqual(want, got) {
					t.Fatalf("iteration %d: v1alpha3 → %s → v1alpha3 is not the identity (-want +got):\n%s", i, s.name, diff.Diff(want, got))
				}
			}
		})
	}
}

func convertJSON(t testing.TB, h *converter.Handler, desired string, obj []byte) []byte {
	t.Helper()
	resp := h.Convert(context.Background(), &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: desired, Objects: []runtime.RawExtension{{Raw: obj}}})
	if resp.Result.Status != metav1.StatusSuccess {
		t.Fatalf("converting to %s: %s\n%s", desired, resp.Result.Message, obj)
	}
	return resp.ConvertedObjects[0].Raw
}

// servedJSON is a v1alpha3 object's JSON as the apiserver serves it: its
// spec with the schema's defaults; numbers keep their spelling.
func servedJSON(t testing.TB, obj []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	v1alpha3.SpecDefaults.Apply(v["spec"])
	// Re-read, so that a default is the number it would be as JSON.
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}
