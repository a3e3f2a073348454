// Command fsm-webhooks runs the admission webhooks of a Pipy-based service mesh
// compatible with Flomesh Service Mesh: the sidecar injector, the validator and
// the MeshConfig conversion webhook, with their certificates.
//
// This package only parses flags and wires packages together.
package main

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	// client-go logs through klog (leader election, reflectors): through
	// controller-runtime's logger, which each command sets from --log-level,
	// so its lines are JSON and honour the level. Here, before any goroutine
	// logs: klog.SetLogger is not safe to call later, and a command run
	// in-process (the tests) must not call it.
	klog.SetLogger(ctrl.Log)
	if err := newRootCommand().Execute(); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "fsm-webhooks: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "fsm-webhooks: %v\n", err)
		os.Exit(1)
	}
}

// usageError marks a bad flag or argument: exit code 2, one line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}
