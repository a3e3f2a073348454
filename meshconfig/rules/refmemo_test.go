package rules

import (
	"fmt"
	"testing"

	"github.com/distribution/reference"
)

// TestRefMemoAgreesAndStaysBounded: the memo's verdicts are reference's own,
// first call or repeated, and it never holds more than its bound.
func TestRefMemoAgreesAndStaysBounded(t *testing.T) {
	for _, s := range []string{"flomesh/pipy:1.5.12", "image:v1.5.0", "image:bad tag", "Flomesh/Pipy", "image@sha256:abc", "", "ghcr.io/flomesh-io/image"} {
		_, wantParse := reference.Parse(s)
		_, wantNamed := reference.ParseNormalizedNamed(s)
		for range 2 {
			if got := ParseReference(s); fmt.Sprint(got) != fmt.Sprint(wantParse) {
				t.Errorf("ParseReference(%q) = %v, reference.Parse says %v", s, got, wantParse)
			}
			if got := ParseNormalizedNamed(s); fmt.Sprint(got) != fmt.Sprint(wantNamed) {
				t.Errorf("ParseNormalizedNamed(%q) = %v, reference says %v", s, got, wantNamed)
			}
		}
	}
	for i := range 3 * refMemoEntries {
		_ = ParseReference(fmt.Sprintf("image:v%d", i))
	}
	refs.mu.Lock()
	n := len(refs.m)
	refs.mu.Unlock()
	if n > refMemoEntries {
		t.Errorf("memo holds %d entries, bound %d", n, refMemoEntries)
	}
}
