// Package ratchet keeps stored objects editable when validation gets
// stricter: on UPDATE, a problem the stored object already has, unchanged,
// is reported as a warning instead of a denial (the idea of the apiserver's
// CRD validation ratcheting). Every kind the validator handles uses it, so
// MeshConfig and the policy kinds ratchet the same way.
package ratchet

// Suffix ends the warning for a problem the stored object already had.
const Suffix = " (already stored: allowed unchanged, please fix)"

// Warning is the warning text for a stored problem.
func Warning(problem string) string { return problem + Suffix }

// Split separates the problems found in the new object into fresh ones,
// which deny, and stored ones, which old (the problems of the stored
// object) already has by same and which only warn. Order is kept. With no
// old problems everything is fresh. Problems are matched as a multiset:
// each old problem excuses one found problem, so a second copy of a stored
// problem is fresh.
func Split[T any](found, old []T, same func(a, b T) bool) (fresh, stored []T) {
	used := make([]bool, len(old))
	for _, p := range found {
		if i := unused(old, used, p, same); i >= 0 {
			used[i] = true
			stored = append(stored, p)
		} else {
			fresh = append(fresh, p)
		}
	}
	return fresh, stored
}

// unused returns the index of the first old problem not yet used that is
// the same as p, or -1.
func unused[T any](old []T, used []bool, p T, same func(a, b T) bool) int {
	for i, o := range old {
		if !used[i] && same(o, p) {
			return i
		}
	}
	return -1
}
