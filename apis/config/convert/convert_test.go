package convert_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
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
