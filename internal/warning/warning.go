// Package warning keeps admission warnings whole on their way to the user.
// The apiserver cuts every warning of a response to 256 runes once their
// total passes 4096 runes, and drops the later ones if still over
// (k8s.io/apiserver pkg/endpoints/filters/warning.go); the admission webhook
// documentation asks for at most 120 characters where possible. Each warning
// says what, where and the one action, and names its docs section with a
// short tag; the reasons are in the docs.
package warning

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxRunes is the longest warning the apiserver never cuts.
const MaxRunes = 256

// ellipsis marks text cut to fit.
const ellipsis = "…"

// Fit is msg then tail, msg cut on a rune boundary (ending with "…") so the
// whole is at most MaxRunes runes: the tail (an action, a docs tag, a
// ratchet note) always survives.
func Fit(msg, tail string) string {
	budget := MaxRunes - utf8.RuneCountInString(tail)
	return Cut(msg, max(budget, 1)) + tail
}

// Cut is s cut to at most n runes, ending with "…" when cut.
func Cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + ellipsis
}

// Quote is v quoted as %q, its content cut to n runes: a value the user
// wrote (an annotation's) may be of any length.
func Quote(v string, n int) string {
	return fmt.Sprintf("%q", Cut(v, n))
}

// List joins items with ", " while the result stays within budget runes;
// the rest are counted ("and 3 more"), so a warning naming many containers
// stays one short warning.
func List(items []string, budget int) string {
	var b strings.Builder
	for i, it := range items {
		sep := ""
		if i > 0 {
			sep = ", "
		}
		more := ""
		if i < len(items)-1 {
			more = fmt.Sprintf(", and %d more", len(items)-i-1)
		}
		if utf8.RuneCountInString(b.String()+sep+it+more) > budget && i > 0 {
			fmt.Fprintf(&b, " and %d more", len(items)-i)
			return b.String()
		}
		b.WriteString(sep + it)
	}
	return b.String()
}
