package meshconfig

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// TestEveryWarningFits: each warning Validate and ValidateUpdate give, with
// values as long as a MeshConfig can hold, is at most warning.MaxRunes
// runes, so the apiserver never cuts it. The stored-schema warning listed
// every error after a 300-rune preamble, over the limit before the first:
// now one warning per error.
func TestEveryWarningFits(t *testing.T) {
	long := strings.Repeat("x", 2000)
	objs := map[string]string{
		V1alpha2: `{"spec":{"sidecar":{"sidecarClass":"pipy","initContainerImage":"flomesh/init:1","sidecarDrivers":[{"sidecarName":"pipy","proxyServerPort":6060}],"logLevel":"critical"},` +
			`"repoServer":{"port":40000},"observability":{"tracing":{"port":40001},"remoteLogging":{"port":40002}},` +
			`"traffic":{"outboundIPRangeExclusionList":["fd00::/8","2001:db8::/32"]}}}`,
		V1alpha1: `{"metadata":{"annotations":{"note":"` + long + `"}},"spec":{"sidecar":{"logLevel":"trace"}}}`,
	}
	var n int
	for version, obj := range objs {
		for _, r := range []Result{Validate(version, []byte(obj)), ValidateUpdate(version, []byte(obj), []byte(obj))} {
			for _, w := range r.Warnings {
				n++
				if c := utf8.RuneCountInString(w); c > warning.MaxRunes {
					t.Errorf("%s: warning of %d runes, over %d: %s", version, c, warning.MaxRunes, w)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("%d warnings, want every kind", n)
	}
	ws := storedSchemaWarnings(longSchemaErrors())
	if len(ws) != 30 {
		t.Fatalf("%d stored-schema warnings, want one per error", len(ws))
	}
	for _, w := range ws {
		if c := utf8.RuneCountInString(w); c > warning.MaxRunes || !strings.HasPrefix(w, "the config.flomesh.io/v1alpha3 object this write is stored as fails the v1alpha3 schema: spec.") ||
			!strings.HasSuffix(w, "; set it, or write it as v1alpha3") {
			t.Errorf("stored-schema warning of %d runes: %s", c, w)
		}
	}
}

func longSchemaErrors() field.ErrorList {
	var errs field.ErrorList
	for i := range 30 {
		errs = append(errs, field.Required(field.NewPath("spec", fmt.Sprintf("a%d", i)), ""))
	}
	return errs
}
