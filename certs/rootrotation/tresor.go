package rootrotation

import (
	"context"

	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
)

// Tresor is the built-in tresor CA as the CA a rotation drives: its steps
// without the state they return, and its recorded phase with Since the
// moment that phase began.
func Tresor(ca *tresor.Issuer) CA { return tresorCA{ca} }

type tresorCA struct{ ca *tresor.Issuer }

func (t tresorCA) AddNextRoot(ctx context.Context) error {
	_, err := t.ca.AddNextRoot(ctx)
	return err
}

func (t tresorCA) ActivateNextRoot(ctx context.Context) error {
	_, err := t.ca.ActivateNextRoot(ctx)
	return err
}

func (t tresorCA) DropPreviousRoot(ctx context.Context) error {
	_, err := t.ca.DropPreviousRoot(ctx)
	return err
}

func (t tresorCA) RotationStatus(ctx context.Context) (Status, error) {
	st, err := t.ca.RotationStatus(ctx)
	if err != nil {
		return Status{}, err
	}
	out := Status{Phase: Phase(st.Phase), Current: st.Active, Next: st.Next, Previous: st.Previous}
	switch st.Phase {
	case tresor.PhaseNextRootAdded:
		out.Since = st.Started
	case tresor.PhaseNextRootActive:
		out.Since = st.Activated
	default:
		out.Since = st.Completed
	}
	return out, nil
}
