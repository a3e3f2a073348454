package converter

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flomesh-io/fsm-webhooks/test/ctxtest"
)

// TestConvertStopsWhenRequestEnds: a review of many objects (a LIST of 1000
// MeshConfigs in an old version costs about a second of CPU) stops at the
// next object once the request's context is done (the apiserver timed out
// or went away), instead of converting the rest for nobody.
func TestConvertStopsWhenRequestEnds(t *testing.T) {
	h := NewHandler(meshScheme(t), group, logr.Discard())
	obj := presetWith(t, nil)
	objects := make([]runtime.RawExtension, 50)
	for i := range objects {
		objects[i] = runtime.RawExtension{Raw: obj}
	}
	ctx := &ctxtest.Countdown{Context: context.Background(), Left: 3}
	resp := h.Convert(ctx, &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: group + "/v1alpha1", Objects: objects})
	if resp.Result.Status != "Failure" || !strings.Contains(resp.Result.Message, "stopped after 3 of 50 objects: the request ended (context canceled)") {
		t.Fatalf("result %s %q, want a failure after 3 of 50 objects", resp.Result.Status, resp.Result.Message)
	}
	// Not done: every object is converted, as before.
	resp = h.Convert(context.Background(), &apixv1.ConversionRequest{UID: "u", DesiredAPIVersion: group + "/v1alpha1", Objects: objects})
	if resp.Result.Status != "Success" || len(resp.ConvertedObjects) != len(objects) {
		t.Fatalf("result %s %q, %d objects; want all %d converted", resp.Result.Status, resp.Result.Message, len(resp.ConvertedObjects), len(objects))
	}
}
