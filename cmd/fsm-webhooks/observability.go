package main

import (
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmetrics"
	"github.com/flomesh-io/fsm-webhooks/certs/status"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
)

// watchCAMetrics makes the root CA metrics report issuer until stop; with
// the built-in CA also its rotation phase, from the state it keeps in
// memory (no apiserver read per scrape).
func watchCAMetrics(issuer certs.Issuer) (stop func()) {
	var phase certmetrics.PhaseFunc
	if ca, ok := issuer.(*tresor.Issuer); ok {
		phase = func() string { return status.PhaseName(ca.State().Rotation.Phase) }
	}
	return certmetrics.Watch(issuer, phase)
}
