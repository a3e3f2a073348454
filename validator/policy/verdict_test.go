package policy

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
)

func TestDecide(t *testing.T) {
	fsm := Finding{Message: "Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: tcp"}
	conflict := Finding{Message: "duplicate backends detected\n[+] IngressBackend ns/a conflicts with ns/b:\nBackend web specified in a and b conflicts\n\n", BeyondFSM: true}
	const conflictLine = "duplicate backends detected [+] IngressBackend ns/a conflicts with ns/b: Backend web specified in a and b conflicts"
	cases := []struct {
		name          string
		found, stored []Finding
		strict        bool
		wantDenials   []string
		wantWarnings  []string
	}{
		{name: "valid"},
		{name: "FSM's rule denies in either mode", found: []Finding{fsm}, wantDenials: []string{fsm.Message}},
		{name: "FSM's rule denies, strict", found: []Finding{fsm}, strict: true, wantDenials: []string{fsm.Message}},
		{name: "a rule FSM skipped only warns, on one line", found: []Finding{conflict},
			wantWarnings: []string{conflictLine + NotEnforcedSuffix}},
		{name: "strict denies it with FSM's multi-line message", found: []Finding{conflict}, strict: true,
			wantDenials: []string{conflict.Message}},
		{name: "both: the denial carries the warning", found: []Finding{conflict, fsm},
			wantDenials: []string{fsm.Message}, wantWarnings: []string{conflictLine + NotEnforcedSuffix}},
		{name: "update: stored problems warn, in either mode", found: []Finding{fsm, conflict}, stored: []Finding{conflict, fsm}, strict: true,
			wantWarnings: []string{fsm.Message + " (already stored: allowed unchanged, please fix)",
				conflictLine + " (already stored: allowed unchanged, please fix)"}},
		{name: "update: a new problem still denies", found: []Finding{fsm, conflict}, stored: []Finding{conflict},
			wantDenials: []string{fsm.Message}, wantWarnings: []string{conflictLine + " (already stored: allowed unchanged, please fix)"}},
		{name: "control characters from user values never reach a warning",
			found: []Finding{{Message: "got '\x07a\tb\r'", BeyondFSM: true}}, wantWarnings: []string{"got ' a b '" + NotEnforcedSuffix}},
		{name: "update: same text, other severity is a new problem",
			found: []Finding{{Message: "m"}}, stored: []Finding{{Message: "m", BeyondFSM: true}}, wantDenials: []string{"m"}},
		{name: "update: same text, other key is a new problem",
			found: []Finding{{Message: "m", Key: "sources[b]"}}, stored: []Finding{{Message: "m", Key: "sources[a]"}}, wantDenials: []string{"m"}},
		{name: "update: a second copy of a stored problem is new",
			found: []Finding{{Message: "m", Key: "k"}, {Message: "m", Key: "k"}}, stored: []Finding{{Message: "m", Key: "k"}},
			wantDenials: []string{"m"}, wantWarnings: []string{"m (already stored: allowed unchanged, please fix)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.found, tc.stored, tc.strict)
			if !slices.Equal(v.Denials, tc.wantDenials) || !slices.Equal(v.Warnings, tc.wantWarnings) {
				t.Errorf("Decide:\n denials  %q\n warnings %q\nwant\n denials  %q\n warnings %q", v.Denials, v.Warnings, tc.wantDenials, tc.wantWarnings)
			}
		})
	}
}

// TestDecideWarningsFit: a warning made of a long message (FSM's conflict
// report lists every backend) keeps its suffix and is at most
// warning.MaxRunes runes, so the apiserver never cuts it.
func TestDecideWarningsFit(t *testing.T) {
	long := Finding{Message: "duplicate backends detected: " + strings.Repeat("[+] IngressBackend ns/a conflicts with ns/b\n", 40), BeyondFSM: true}
	v := Decide([]Finding{long}, nil, false)
	v2 := Decide([]Finding{long}, []Finding{long}, false)
	for _, tc := range []struct {
		ws     []string
		suffix string
	}{{v.Warnings, NotEnforcedSuffix}, {v2.Warnings, ratchet.Suffix}} {
		if len(tc.ws) != 1 || utf8.RuneCountInString(tc.ws[0]) > warning.MaxRunes || !strings.HasSuffix(tc.ws[0], tc.suffix) ||
			!strings.HasPrefix(tc.ws[0], "duplicate backends detected: [+] IngressBackend ns/a conflicts with ns/b") {
			t.Errorf("warnings %q: want one of at most %d runes ending %q", tc.ws, warning.MaxRunes, tc.suffix)
		}
	}
}
