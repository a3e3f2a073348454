package main

import (
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// serveProcess is `fsm-webhooks serve` running against the test apiserver,
// as a separate process with its own clients, caches, key pool and
// controllers: what ships.
type serveProcess struct {
	cmd        *exec.Cmd
	bin        string
	logPath    string
	ports      servePorts
	nonDefault []string
	// ready is how long serve took from exec to /readyz answering 200 with
	// nothing in the apiserver yet (it creates the CA, the serving certs and
	// the registrations).
	ready time.Duration
	done  chan error
}

// buildServe builds cmd/fsm-webhooks from the checkout the tool runs in.
func buildServe(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fsm-webhooks")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/flomesh-io/fsm-webhooks/cmd/fsm-webhooks")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building fsm-webhooks: %w", err)
	}
	return bin, nil
}

// binaryVersion names the commit a binary was built from, as `go build`
// stamps it.
func binaryVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown build"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev == "":
		return "no VCS stamp"
	case modified == "true":
		return "git " + rev[:min(12, len(rev))] + " + uncommitted changes"
	}
	return "git " + rev[:min(12, len(rev))]
}

// startServe runs serve against the apiserver kubeconfig points at and
// waits until it is ready.
func startServe(ctx context.Context, bin, kubeconfig, dir string, c config) (*serveProcess, error) {
	free, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	p := servePorts{injector: free[0], validator: free[1], converter: free[2], metrics: free[3], health: free[4]}
	args, nonDefault := serveArgs(kubeconfig, p, c.alg, c.serveArgs)
	s := &serveProcess{bin: bin, logPath: cmp.Or(c.serveLog, filepath.Join(dir, "serve.log")), ports: p, nonDefault: nonDefault, done: make(chan error, 1)}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		s.done <- s.cmd.Wait()
		_ = logFile.Close()
	}()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.health)
	// From nothing on a busy machine: the CA (an RSA key unless ECDSA) and
	// three serving certificates are created first.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := get(ctx, readyz); err == nil {
			s.ready = time.Since(start)
			return s, nil
		} else if time.Now().After(deadline) {
			_ = s.stop()
			return nil, fmt.Errorf("serve not ready after 3 minutes (%v); log:\n%s", err, s.logTail(20))
		}
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("serve exited before it was ready (%v); log:\n%s", err, s.logTail(20))
		case <-ctx.Done():
			_ = s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// label says what runs, naming every setting that differs from what ships.
func (s *serveProcess) label() string {
	settings := "shipped defaults"
	if len(s.nonDefault) > 0 {
		settings = "shipped defaults except " + strings.Join(s.nonDefault, " ")
	}
	return fmt.Sprintf("injector: `fsm-webhooks serve` process (%s), %s (placement only otherwise: --kubeconfig, URL registration, loopback ports); start to ready %.2f s from nothing (it creates the CA, serving certs and registrations)",
		binaryVersion(s.bin), settings, s.ready.Seconds())
}

// usage is serve's CPU time so far and its resident memory.
type usage struct {
	cpu           time.Duration
	rssKiB, hwKiB int64
	injector      histogram
	hasHistogram  bool
}

func (s *serveProcess) sample(ctx context.Context) (usage, error) {
	var u usage
	pid := s.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	if u.cpu, err = procCPU(string(stat)); err != nil {
		return u, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	if u.rssKiB, err = procStatusKiB(string(status), "VmRSS"); err != nil {
		return u, err
	}
	if u.hwKiB, err = procStatusKiB(string(status), "VmHWM"); err != nil {
		return u, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.ports.metrics), nil)
	if err != nil {
		return u, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return u, err
	}
	defer func() { _ = resp.Body.Close() }()
	u.injector, u.hasHistogram, err = scrapeHistogram(resp.Body, "fsm_webhooks_request_duration_seconds", map[string]string{"webhook": "injector"})
	return u, err
}

// measure returns a function reporting serve's share of the phase it
// brackets: CPU, memory and, when serve exports it, the injector's request
// latency as its own histogram shows it.
func (s *serveProcess) measure(ctx context.Context) (func(elapsed time.Duration) string, error) {
	before, err := s.sample(ctx)
	if err != nil {
		return nil, fmt.Errorf("sampling serve: %w", err)
	}
	return func(elapsed time.Duration) string {
		after, err := s.sample(ctx)
		if err != nil {
			return fmt.Sprintf("serve: sampling failed: %v", err)
		}
		out := fmt.Sprintf("serve process: %.2f cores, RSS %.0f MiB (peak %.0f MiB)",
			(after.cpu-before.cpu).Seconds()/elapsed.Seconds(), float64(after.rssKiB)/1024, float64(after.hwKiB)/1024)
		if !after.hasHistogram {
			return out + "; its handler latency is not exported by this build (use -in-process for the handler's own figures)"
		}
		h := after.injector.since(before.injector)
		return out + fmt.Sprintf("; injector requests as serve timed them (histogram, interpolated): p50 %.2f ms  p99 %.2f ms over %d",
			h.quantile(.50)*1000, h.quantile(.99)*1000, h.total())
	}, nil
}

// stop ends serve with SIGTERM, as the kubelet does, then SIGKILL.
func (s *serveProcess) stop() error {
	if s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && !exit.Exited() {
			return nil // ended by our signal
		}
		return err
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("serve did not stop within 15 s of SIGTERM; killed")
	}
}

// logTail is the last n lines of serve's log.
func (s *serveProcess) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
