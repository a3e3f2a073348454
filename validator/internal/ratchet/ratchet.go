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
// old problems everything is fresh.
func Split[T any](found, old []T, same func(a, b T) bool) (fresh, stored []T) {
	for _, p := range found {
		if contains(old, p, same) {
			stored = append(stored, p)
		} else {
			fresh = append(fresh, p)
		}
	}
	return fresh, stored
}

func contains[T any](list []T, p T, same func(a, b T) bool) bool {
	for _, o := range list {
		if same(o, p) {
			return true
		}
	}
	return false
}
