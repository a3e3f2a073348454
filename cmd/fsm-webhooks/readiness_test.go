package main

import (
	"slices"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// TestGatePodReadiness: with the injector served, only it gates the pod's
// readiness; without it, every served webhook does.
func TestGatePodReadiness(t *testing.T) {
	cases := []struct {
		served []string
		gating []string
	}{
		{served: allHooks, gating: []string{hookInjector}},
		{served: []string{hookValidator, hookInjector}, gating: []string{hookInjector}},
		{served: []string{hookValidator, hookConverter}, gating: []string{hookValidator, hookConverter}},
		{served: []string{hookConverter}, gating: []string{hookConverter}},
	}
	for _, c := range cases {
		hooks := make([]webhooks.Webhook, 0, len(c.served))
		for _, n := range c.served {
			hooks = append(hooks, webhooks.Webhook{Name: n})
		}
		gatePodReadiness(hooks)
		var gating []string
		for _, h := range hooks {
			if !h.ReportOnly {
				gating = append(gating, h.Name)
			}
		}
		if !slices.Equal(gating, c.gating) {
			t.Errorf("serving %v: pod readiness gated by %v, want %v", c.served, gating, c.gating)
		}
	}
}
