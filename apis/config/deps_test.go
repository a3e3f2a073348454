package config_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestTypesImportNothingOfOurs keeps the API types self-contained: every
// package of this module that a non-test package under apis/ imports must
// itself be under apis/. hack/verify-generated.sh regenerates from a copy of
// apis/ alone, and the types are what other projects may vendor.
func TestTypesImportNothingOfOurs(t *testing.T) {
	const module = "github.com/flomesh-io/fsm-webhooks/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"apis/...").Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps apis/...: %v\n%s", err, stderr)
	}
	var ours int
	for _, pkg := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(pkg, module)
		if !ok {
			continue
		}
		ours++
		if !strings.HasPrefix(rel, "apis/") {
			t.Errorf("apis/ links %s, which is outside apis/", pkg)
		}
	}
	if ours < 4 { // config, v1alpha1, v1alpha2, v1alpha3 at least
		t.Fatalf("go list found %d packages of ours under apis/; does the pattern still match?\n%s", ours, out)
	}
}
