// Package ratchet keeps stored objects editable when validation gets
// stricter: on UPDATE, a problem the stored object already has, unchanged,
// is reported as a warning instead of a denial (the idea of the apiserver's
// CRD validation ratcheting). Every kind the validator handles uses it, so
// MeshConfig and the policy kinds ratchet the same way.
package ratchet

import (
	"slices"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// Suffix ends the warning for a problem the stored object already had.
const Suffix = " (already stored: allowed unchanged, please fix)"

// Warning is the warning text for a stored problem, the problem cut so the
// whole stays within what the apiserver passes on whole (internal/warning).
func Warning(problem string) string { return warning.Fit(problem, Suffix) }

// Split separates the problems found in the new object into fresh ones,
// which deny, and stored ones, which old (the problems of the stored
// object) already has by same and which only warn. Order is kept. With no
// old problems everything is fresh. Problems are matched as a multiset:
// each old problem excuses one found problem (the first unused one that is
// the same), so a second copy of a stored problem is fresh.
//
// key buckets the problems: same is only asked of two with the same key,
// so key must be equal wherever same holds. Each problem's key is computed
// once; without it an UPDATE of an object with many problems (thousands
// of bad list entries, stored while only warned of) compared every new
// problem with every stored one, seconds of the CPU pod admission shares.
func Split[T any](found, old []T, key func(T) string, same func(a, b T) bool) (fresh, stored []T) {
	unused := make(map[string][]int, len(old)) // by key, old indices in order
	for i, o := range old {
		k := key(o)
		unused[k] = append(unused[k], i)
	}
	for _, p := range found {
		k := key(p)
		bucket := unused[k]
		i := slices.IndexFunc(bucket, func(j int) bool { return same(old[j], p) })
		if i < 0 {
			fresh = append(fresh, p)
			continue
		}
		if i == 0 {
			unused[k] = bucket[1:] // the usual case, without moving the rest
		} else {
			unused[k] = slices.Delete(bucket, i, i+1)
		}
		stored = append(stored, p)
	}
	return fresh, stored
}
