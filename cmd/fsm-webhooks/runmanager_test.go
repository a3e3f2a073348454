package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// syncsLateManager is a manager whose caches sync just after it is asked to
// stop: it then starts its runnables (pastCaches, the bootstrap Secret
// writer's flush) and stops them, which takes stopTakes.
type syncsLateManager struct {
	manager.Manager
	running   *pastCaches
	stopTakes time.Duration
}

var errStopped = errors.New("stopped after the flush")

func (m syncsLateManager) Start(ctx context.Context) error {
	<-ctx.Done()
	time.Sleep(100 * time.Millisecond)
	_ = m.running.Start(ctx)
	time.Sleep(m.stopTakes)
	return errStopped
}

// TestRunManagerWaitsForAManagerPastItsCaches: a manager whose caches sync
// within managerStopWait of its context's end runs its runnables, the
// writer's shutdown flush among them (up to flushTimeout): runManager waits
// for it however long its stop takes, not managerStopWait from the end.
func TestRunManagerWaitsForAManagerPastItsCaches(t *testing.T) {
	running := newPastCaches()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := runManager(ctx, syncsLateManager{running: running, stopTakes: managerStopWait + time.Second}, running, logr.Discard())
	if !errors.Is(err, errStopped) {
		t.Fatalf("runManager = %v; want it to wait for the manager, which got past its caches, to stop (%v)", err, errStopped)
	}
}
