package tresor

import (
	"context"

	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
)

// RotationCA is the tresor CA as the CA a root rotation drives
// (rootrotation.CA): its steps without the state they return, and its
// recorded phase with Since the moment that phase began. It lives here, not
// in rootrotation, so that rootrotation (and the test CA that implements its
// CA) never imports the tresor package.
func RotationCA(ca *Issuer) rootrotation.CA { return tresorCA{ca} }

type tresorCA struct{ ca *Issuer }

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

func (t tresorCA) RotationStatus(ctx context.Context) (rootrotation.Status, error) {
	st, err := t.ca.RotationStatus(ctx)
	if err != nil {
		return rootrotation.Status{}, err
	}
	out := rootrotation.Status{Phase: rootrotation.Phase(st.Phase), Current: st.Active, Next: st.Next, Previous: st.Previous}
	switch st.Phase {
	case PhaseNextRootAdded:
		out.Since = st.Started
	case PhaseNextRootActive:
		out.Since = st.Activated
	default:
		out.Since = st.Completed
	}
	return out, nil
}
