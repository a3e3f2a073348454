// Package meshassets builds, once per machine, the binaries the node suite's
// meshed pods need that are on no registry this machine reaches as
// binaries, into the asset cache next to the Kubernetes binaries
// (internal/kubeassets), keyed by version:
//
//	${XDG_CACHE_HOME:-~/.cache}/fsm-webhooks/assets/pipy-<PipyVersion>/pipy
//	${XDG_CACHE_HOME:-~/.cache}/fsm-webhooks/assets/coredns-<CoreDNSVersion>/coredns
//
// Pipy (FSM v1.5.1's sidecar proxy) is built from the source copy in
// ../shared/pipy with Debian's cmake and clang (../shared/pipy/BUILD.md,
// ~13 minutes on two busy cores); CoreDNS (the node's cluster DNS) from its
// Go module with only the plugins the node uses. Concurrent callers are
// serialised with flock(2) on the directory's .lock; a build writes a
// progress line when it starts, every 30 s and when it ends, and its
// commands' output to <name>.build.log beside the binary. A binary that is
// present but does not report its version is rebuilt.
package meshassets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	progressEvery = 30 * time.Second
	lockPoll      = 500 * time.Millisecond
	buildTimeout  = 45 * time.Minute
)

// asset is one cached binary.
type asset struct {
	name     string // file name, and the prefix of its directory
	version  string
	estimate string // of a cold build, for the progress line
	// check fails unless path is a working binary of version.
	check func(ctx context.Context, path string) error
	// build writes the binary to out, logging commands to log.
	build func(ctx context.Context, out string, log io.Writer) error
}

// ensure returns the path of a working a, building it under the lock if it
// is missing or broken.
func ensure(ctx context.Context, a asset, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("%s: locating the user cache directory: %w", a.name, err)
	}
	dir := filepath.Join(base, "fsm-webhooks", "assets", a.name+"-"+a.version)
	bin := filepath.Join(dir, a.name)
	if a.check(ctx, bin) == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%s: %w", a.name, err)
	}
	unlock, err := lock(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if a.check(ctx, bin) == nil {
		return bin, nil
	}
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	start := time.Now()
	fmt.Fprintf(progress, "assets: building %s %s into %s (%s)\n", a.name, a.version, dir, a.estimate)
	stop := ticker(progress, start, fmt.Sprintf("assets: still building %s %s", a.name, a.version))
	logPath := filepath.Join(dir, a.name+".build.log")
	err = buildInto(ctx, a, dir, logPath)
	stop()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w (log %s)", a.name, a.version, err, logPath)
	}
	if err := a.check(ctx, bin); err != nil {
		return "", fmt.Errorf("%s: freshly built %s does not work: %w", a.name, bin, err)
	}
	fmt.Fprintf(progress, "assets: built %s %s in %s\n", a.name, a.version, time.Since(start).Round(time.Second))
	return bin, nil
}

// buildInto builds into a temporary file renamed into place, so that an
// interrupted build leaves nothing that looks finished.
func buildInto(ctx context.Context, a asset, dir, logPath string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	tmp := filepath.Join(dir, "."+a.name+".tmp")
	if err := a.build(ctx, tmp, log); err != nil {
		_ = os.Remove(tmp) // best effort: the error says what failed
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, a.name))
}

// lock takes an exclusive flock(2) on path, polling so that ctx can cancel
// the wait, and says every 30 s that it is waiting.
func lock(ctx context.Context, path string, progress io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening asset lock: %w", err)
	}
	start := time.Now()
	var lastNote time.Time
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // close releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Since(lastNote) >= progressEvery {
			fmt.Fprintf(progress, "assets: waiting for another process building into %s (%s elapsed)\n",
				filepath.Dir(path), time.Since(start).Round(time.Second))
			lastNote = time.Now()
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

func ticker(progress io.Writer, start time.Time, msg string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "%s (%s elapsed)\n", msg, time.Since(start).Round(time.Second))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
