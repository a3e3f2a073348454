package rules

import (
	"sync"

	"github.com/distribution/reference"
)

// refMemo remembers what distribution/reference said of a string. A
// MeshConfig names a dozen images, and every write of it re-validates all of
// them: reference's regular expressions were 9% of the validator's CPU on a
// MeshConfig UPDATE. Bounded: cleared when full, long strings never kept.
type refMemo struct {
	mu sync.Mutex
	m  map[refKey]error
}

type refKey struct {
	normalized bool // ParseNormalizedNamed, else Parse
	s          string
}

const (
	refMemoEntries = 512
	refMemoMaxLen  = 512
)

var refs = refMemo{m: map[refKey]error{}}

func (r *refMemo) check(k refKey) error {
	if len(k.s) > refMemoMaxLen {
		return parseRef(k)
	}
	r.mu.Lock()
	err, ok := r.m[k]
	r.mu.Unlock()
	if ok {
		return err
	}
	err = parseRef(k)
	r.mu.Lock()
	if len(r.m) >= refMemoEntries {
		clear(r.m)
	}
	r.m[k] = err
	r.mu.Unlock()
	return err
}

func parseRef(k refKey) error {
	var err error
	if k.normalized {
		_, err = reference.ParseNormalizedNamed(k.s)
	} else {
		_, err = reference.Parse(k.s)
	}
	return err
}

// ParseReference is reference.Parse's verdict on s (nil when s parses).
func ParseReference(s string) error { return refs.check(refKey{s: s}) }

// ParseNormalizedNamed is reference.ParseNormalizedNamed's verdict on s.
func ParseNormalizedNamed(s string) error { return refs.check(refKey{normalized: true, s: s}) }
