package ratchet

import (
	"fmt"
	"slices"
	"testing"
)

func TestSplit(t *testing.T) {
	same := func(a, b string) bool { return a == b }
	cases := []struct {
		name               string
		found, old         []string
		wantFresh, wantOld []string
	}{
		{name: "create: no old problems", found: []string{"a", "b"}, wantFresh: []string{"a", "b"}},
		{name: "all stored", found: []string{"a", "b"}, old: []string{"b", "a"}, wantOld: []string{"a", "b"}},
		{name: "new problem next to a stored one", found: []string{"a", "c", "b"}, old: []string{"b"},
			wantFresh: []string{"a", "c"}, wantOld: []string{"b"}},
		{name: "fixed problems are not reported", found: nil, old: []string{"a"}},
		{name: "a changed problem is new", found: []string{"x: 2"}, old: []string{"x: 1"}, wantFresh: []string{"x: 2"}},
		{name: "each old problem excuses one found problem", found: []string{"a", "a", "b", "a"}, old: []string{"a", "b", "a"},
			wantFresh: []string{"a"}, wantOld: []string{"a", "a", "b"}},
		{name: "fewer copies than stored", found: []string{"a"}, old: []string{"a", "a"}, wantOld: []string{"a"}},
		{name: "a match past the first of its key is used up", found: []string{"ab", "ab", "aa"}, old: []string{"aa", "ab"},
			wantFresh: []string{"ab"}, wantOld: []string{"ab", "aa"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh, stored := Split(tc.found, tc.old, func(s string) string { return s[:1] }, same)
			if !slices.Equal(fresh, tc.wantFresh) || !slices.Equal(stored, tc.wantOld) {
				t.Errorf("Split(%q, %q) = %q, %q; want %q, %q", tc.found, tc.old, fresh, stored, tc.wantFresh, tc.wantOld)
			}
		})
	}
}

func TestWarning(t *testing.T) {
	if got, want := Warning("spec.x: Invalid value"), "spec.x: Invalid value (already stored: allowed unchanged, please fix)"; got != want {
		t.Errorf("Warning = %q, want %q", got, want)
	}
}

// TestSplitComparesWithinKeys: an UPDATE of an object with many problems
// (thousands of bad list entries, stored while only warned of) asks same
// about each new problem once, not once per stored problem: unbucketed, the
// 20,000 here took 400 million comparisons (over 2 s of AccessControl
// sources with their real comparison).
func TestSplitComparesWithinKeys(t *testing.T) {
	const n = 20000
	var found, old []string
	for i := range n {
		found = append(found, fmt.Sprintf("new %d", i))
		old = append(old, fmt.Sprintf("old %d", i))
	}
	found = append(found, "old 7", "old 7") // one stored, the second copy fresh
	calls := 0
	same := func(a, b string) bool { calls++; return a == b }
	fresh, stored := Split(found, old, func(s string) string { return s }, same)
	if len(fresh) != n+1 || !slices.Equal(stored, []string{"old 7"}) {
		t.Fatalf("%d fresh, stored %q; want %d fresh, stored [old 7]", len(fresh), stored, n+1)
	}
	if calls > 2 {
		t.Errorf("same was called %d times, want at most 2 (once per problem whose key a stored one has)", calls)
	}
}
