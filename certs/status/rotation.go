package status

import (
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
)

// PhaseNone is the phase of a CA Secret no rotation ever touched.
const PhaseNone = "None"

// PhaseName spells a tresor rotation phase for reports and metrics.
func PhaseName(p tresor.Phase) string {
	if p == tresor.PhaseNone {
		return PhaseNone
	}
	return string(p)
}

// TresorRotation is the built-in CA's rotation as the report shows it: the
// phase, when it was entered, and the root that signs new certificates.
func TresorRotation(rs tresor.RotationStatus, now time.Time) *RootRotation {
	out := &RootRotation{Phase: PhaseName(rs.Phase), Managed: rs.Managed}
	switch rs.Phase {
	case tresor.PhaseNextRootAdded:
		out.Since = rs.Started.UTC()
	case tresor.PhaseNextRootActive:
		out.Since = rs.Activated.UTC()
	case tresor.PhaseComplete:
		out.Since = rs.Completed.UTC()
	}
	if rs.Active != nil {
		info := certInfo(rs.Active, now)
		out.Root = &info
	}
	return out
}
