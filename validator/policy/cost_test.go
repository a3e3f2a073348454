package policy

import (
	"fmt"
	"strings"
	"testing"
)

// TestFindingKeyAgreesWithSameFinding: ratchet.Split only asks SameFinding
// about findings with the same findingKey, so the key must be equal
// wherever SameFinding holds.
func TestFindingKeyAgreesWithSameFinding(t *testing.T) {
	fs := []Finding{
		{Message: "m"}, {Message: "m"}, {Message: "n"}, {Message: "m", BeyondFSM: true}, {Message: "m", Key: "k"},
		{Message: "m2", Key: "k"}, {Message: "c", Key: "conflicts", Parts: []string{"a", "b"}, BeyondFSM: true},
		{Message: "c changed", Key: "conflicts", Parts: []string{"b"}, BeyondFSM: true},
		{Message: "c", Key: "conflicts", Parts: []string{"z"}, BeyondFSM: true}, {Message: "c", Key: "conflicts", Parts: []string{}, BeyondFSM: true},
		{Message: "c", Key: "conflicts", BeyondFSM: true},
	}
	for _, a := range fs {
		for _, b := range fs {
			if SameFinding(a, b) && findingKey(a) != findingKey(b) {
				t.Errorf("SameFinding(%+v, %+v) but keys %q and %q differ", a, b, findingKey(a), findingKey(b))
			}
		}
	}
}

// TestDecideManyFindings: an UPDATE of an AccessControl (FSM never routes
// the kind, so in the default mode its findings only warn and it is stored
// with them) with 20,000 bad sources, all changed, and 20,000 backends that
// another AccessControl claims too. Every changed source is new, the
// conflicts stored. Unbucketed, ratcheting compared every new finding with
// every stored one (400 million comparisons, over 2 s), the conflicts'
// parts each with each (conflicts and SameFinding), on the CPU pod
// admission shares (ratchet.TestSplitComparesWithinKeys counts them).
func TestDecideManyFindings(t *testing.T) {
	const n = 20000
	policy := func(name, kind string) BackendPolicy {
		var p BackendPolicy
		p.Metadata.Name, p.Metadata.Namespace = name, "app"
		for i := range n {
			var b Backend
			b.Name, b.Port.Number, b.Port.Protocol = fmt.Sprintf("svc-%d", i), 80, "http"
			p.Spec.Backends = append(p.Spec.Backends, b)
			p.Spec.Sources = append(p.Spec.Sources, Source{Kind: fmt.Sprintf("%s-%d", kind, i)})
		}
		return p
	}
	other, stored, updated := policy("other", "x"), policy("ac", "old"), policy("ac", "new")
	found := ValidateAccessControl(&updated, []BackendPolicy{other, stored})
	old := ValidateAccessControl(&stored, []BackendPolicy{other, stored})
	if len(found) != n+1 || len(old) != n+1 {
		t.Fatalf("%d findings, %d stored; want %d each (a source each, the conflicts)", len(found), len(old), n+1)
	}
	v := Decide(found, old, true)
	if len(v.Denials) != n || len(v.Warnings) != 1 || !strings.HasPrefix(v.Warnings[0], "duplicate backends detected") {
		t.Errorf("%d denials, warnings %.200q; want %d denials (the changed sources) and the stored conflicts as a warning", len(v.Denials), v.Warnings, n)
	}
}
