package kubeassets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flomesh-io/fsm-webhooks/internal/tailbuf"
)

// binary describes how to build one executable from a published Go module: a
// throwaway main module requires the module, applies the replaces, imports the
// main package from a tools.go so that `go mod tidy` keeps what it needs, and
// builds it.
type binary struct {
	name        string   // file name in the asset directory
	module      string   // path of the throwaway main module
	require     string   // module@version to require
	replaces    []string // go mod edit -replace arguments (old=new@version)
	tidyLenient bool     // go mod tidy -e
	main        string   // import path of the main package
	ldflags     string
	versionArgs []string // arguments that make the binary print its version
	versionWant string   // substring the version output must contain
	estimate    string   // how long a cold build takes, for progress lines
}

const (
	progressEvery  = 30 * time.Second
	versionTimeout = 30 * time.Second
	lockPoll       = 500 * time.Millisecond
	// logTail is how much of a failed go command's output goes into the error.
	logTail = 4 << 10
)

// ensure makes dir hold working copies of bins, building the missing or broken
// ones under an exclusive lock on dir/.lock.
func ensure(ctx context.Context, progress io.Writer, dir string, bins []binary) error {
	if allReady(ctx, dir, bins) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating asset directory: %w", err)
	}
	unlock, err := Lock(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have built them while this one waited for the lock.
	for _, b := range bins {
		if ready(ctx, dir, b) == nil {
			continue
		}
		if err := build(ctx, progress, dir, b); err != nil {
			return err
		}
		if err := ready(ctx, dir, b); err != nil {
			return fmt.Errorf("freshly built %s does not work: %w", b.name, err)
		}
	}
	return nil
}

func allReady(ctx context.Context, dir string, bins []binary) bool {
	for _, b := range bins {
		if ready(ctx, dir, b) != nil {
			return false
		}
	}
	return true
}

// ready runs the binary's version command: a binary that is present but
// truncated, for another platform or of another version is rebuilt.
func ready(ctx context.Context, dir string, b binary) error {
	path := filepath.Join(dir, b.name)
	if err := checkExecutable(path); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, b.versionArgs...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", path, strings.Join(b.versionArgs, " "), err, tail(out))
	}
	if !bytes.Contains(out, []byte(b.versionWant)) {
		return fmt.Errorf("%s %s printed %q, want it to contain %q",
			path, strings.Join(b.versionArgs, " "), tail(out), b.versionWant)
	}
	return nil
}

// build compiles b into dir/b.name. The binary is linked into a temporary file
// in dir and renamed into place, so a reader never sees a partial file and an
// interrupted build leaves nothing that looks finished.
func build(ctx context.Context, progress io.Writer, dir string, b binary) (err error) {
	start := time.Now()
	fmt.Fprintf(progress, "assets: building %s from %s into %s (%s)\n", b.name, b.require, dir, b.estimate)
	stop := Ticker(progress, start, "assets: still building "+b.name)
	defer stop()

	gobin, err := goCommand()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "fsm-webhooks-assets-"+b.name+"-")
	if err != nil {
		return fmt.Errorf("building %s: %w", b.name, err)
	}
	defer func() {
		if rmErr := os.RemoveAll(work); rmErr != nil && err == nil {
			err = fmt.Errorf("building %s: removing work dir: %w", b.name, rmErr)
		}
	}()
	tmp, err := os.CreateTemp(dir, "."+b.name+".tmp-*")
	if err != nil {
		return fmt.Errorf("building %s: %w", b.name, err)
	}
	out := tmp.Name()
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("building %s: %w", b.name, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(out) // best effort: the error already says what failed
		}
	}()

	logPath := filepath.Join(dir, b.name+".build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("building %s: creating log: %w", b.name, err)
	}
	defer func() {
		if cErr := logFile.Close(); cErr != nil && err == nil {
			err = fmt.Errorf("building %s: writing log: %w", b.name, cErr)
		}
	}()

	edit := []string{"mod", "edit", "-require=" + b.require}
	for _, r := range b.replaces {
		edit = append(edit, "-replace="+r)
	}
	tidy := []string{"mod", "tidy"}
	if b.tidyLenient {
		tidy = append(tidy, "-e")
	}
	steps := [][]string{
		{"mod", "init", b.module},
		edit,
		tidy,
		{"build", "-ldflags=" + b.ldflags, "-o", out, b.main},
	}
	tools := fmt.Sprintf("//go:build tools\n\npackage tools\n\nimport _ %q\n", b.main)
	if err := os.WriteFile(filepath.Join(work, "tools.go"), []byte(tools), 0o644); err != nil {
		return fmt.Errorf("building %s: %w", b.name, err)
	}
	for _, args := range steps {
		if err := runGo(ctx, gobin, work, logFile, logPath, args); err != nil {
			return fmt.Errorf("building %s: %w", b.name, err)
		}
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return fmt.Errorf("building %s: %w", b.name, err)
	}
	if err := os.Rename(out, filepath.Join(dir, b.name)); err != nil {
		return fmt.Errorf("building %s: installing: %w", b.name, err)
	}
	fmt.Fprintf(progress, "assets: built %s in %s\n", b.name, time.Since(start).Round(time.Second))
	return nil
}

// goCommand finds the go command. `go test` puts $GOROOT/bin first on PATH of
// the test binary, so the toolchain running the tests builds the assets.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", errors.New("building assets needs the go command: not found on PATH or in $GOROOT/bin")
}

// runGo runs one go command in the throwaway module, appending its output to
// log. The error carries the tail of that output.
func runGo(ctx context.Context, gobin, work string, log io.Writer, logPath string, args []string) error {
	fmt.Fprintf(log, "$ go %s\n", strings.Join(args, " "))
	buf := tailbuf.New(logTail)
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = work
	cmd.Env = goEnv(os.Environ())
	cmd.Stdout = io.MultiWriter(log, buf)
	cmd.Stderr = cmd.Stdout
	// go build starts compilers and linkers; on cancellation kill them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("go %s: %w", args[0], ctxErr)
		}
		return fmt.Errorf("go %s: %w (full log: %s)\n%s", strings.Join(args, " "), err, logPath, buf.String())
	}
	return nil
}

// goEnv is the environment for the child go command. The caller's settings
// that would change what or how it builds (GOFLAGS=-race from a test run, a
// go.work, cross-compilation targets) are replaced, also when they come from
// `go env -w`, because an environment variable wins over that file: the
// binaries must run on this machine, and the throwaway module exists only to
// be resolved, so it is resolved freely.
func goEnv(environ []string) []string {
	drop := map[string]bool{
		"GOFLAGS": true, "GOWORK": true, "GOOS": true, "GOARCH": true,
		"GO111MODULE": true, "GOARM": true, "GOAMD64": true, "GO386": true,
	}
	env := make([]string, 0, len(environ)+5)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on",
		"GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
}

// Ticker writes "<msg> (<elapsed>)" to progress every 30 s until the returned
// stop function is called, so a long build shows it is alive. test/meshassets
// uses it for the binaries it adds to the same cache.
func Ticker(progress io.Writer, start time.Time, msg string) (stop func()) {
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

// Lock takes an exclusive flock(2) on path, polling so that ctx can cancel the
// wait, and saying every 30 s that it waits while another process holds it.
// Closing the file releases the lock, also when the holder dies, so a crashed
// build never wedges later runs. test/meshassets serialises its builds into
// the same cache directory with it.
func Lock(ctx context.Context, path string, progress io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening asset lock: %w", err)
	}
	start := time.Now()
	lastNote := start
	noted := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // close releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !noted || time.Since(lastNote) >= progressEvery {
			fmt.Fprintf(progress, "assets: waiting for another process building into %s (%s elapsed)\n",
				filepath.Dir(path), time.Since(start).Round(time.Second))
			noted, lastNote = true, time.Now()
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// progressWriter makes a nil writer usable and serialises writes from the
// ticker goroutine with the caller's.
func progressWriter(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return &lockedWriter{w: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(b []byte) string {
	if len(b) > logTail {
		b = b[len(b)-logTail:]
	}
	return strings.TrimSpace(string(b))
}
