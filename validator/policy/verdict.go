package policy

import (
	"strings"
	"unicode"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
)

// NotEnforcedSuffix ends the warning for a BeyondFSM finding in the default
// (compatible) mode.
const NotEnforcedSuffix = " (warning only: FSM v1.5.1 did not enforce this; strict policy validation denies it)"

// Verdict is the answer to one admission request.
type Verdict struct {
	// Denials, when any, deny the request; the message joins them by
	// newlines (FSM's messages, unchanged).
	Denials []string
	// Warnings are returned either way (kubectl prints them).
	Warnings []string
}

// Decide turns the findings of the object into a verdict. old are the
// findings of the stored object on UPDATE (nil on CREATE): a finding it
// already has only warns, so stored objects stay editable. A BeyondFSM
// finding denies only when strict; otherwise it warns, so manifests FSM
// v1.5.1 accepted keep applying after the switch. Everything else denies.
func Decide(found, old []Finding, strict bool) Verdict {
	fresh, stored := ratchet.Split(found, old, findingKey, SameFinding)
	var v Verdict
	for _, f := range fresh {
		if f.BeyondFSM && !strict {
			v.Warnings = append(v.Warnings, warning.Fit(oneLine(f.Message), NotEnforcedSuffix))
			continue
		}
		v.Denials = append(v.Denials, f.Message)
	}
	for _, f := range stored {
		v.Warnings = append(v.Warnings, ratchet.Warning(oneLine(f.Message)))
	}
	return v
}

// oneLine joins a multi-line message (FSM's conflict report) with single
// spaces: the apiserver silently drops a warning that contains a control
// character such as a newline (messages quote user values unescaped, so
// any control character is replaced).
func oneLine(msg string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)), " ")
}
