package policy

import "testing"

// TestMetaFillTakesOnlyWhatIsMissing: an object sent without metadata (as
// FSM's own test tables send them) takes its name and namespace from the
// admission request; one that names them keeps its own.
func TestMetaFillTakesOnlyWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta Meta
		want Meta
	}{
		{"no metadata", Meta{}, Meta{Name: "req-name", Namespace: "req-ns"}},
		{"name only", Meta{Name: "own"}, Meta{Name: "own", Namespace: "req-ns"}},
		{"namespace only", Meta{Namespace: "own-ns"}, Meta{Name: "req-name", Namespace: "own-ns"}},
		{"both", Meta{Name: "own", Namespace: "own-ns"}, Meta{Name: "own", Namespace: "own-ns"}},
	} {
		m := tc.meta
		m.Fill("req-name", "req-ns")
		if m != tc.want {
			t.Errorf("%s: Fill gave %+v, want %+v", tc.name, m, tc.want)
		}
	}
}
