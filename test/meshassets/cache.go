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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
)

const (
	buildTimeout = 45 * time.Minute
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
	unlock, err := kubeassets.Lock(ctx, filepath.Join(dir, ".lock"), progress)
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
	stop := kubeassets.Ticker(progress, start, fmt.Sprintf("assets: still building %s %s", a.name, a.version))
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

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
