package main

import (
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
)

// serveProcess is `fsm-webhooks serve` running against the test apiserver,
// as a separate process with its own clients, caches, key pool and
// controllers: what ships.
type serveProcess struct {
	cmd        *exec.Cmd
	bin        string
	args       []string
	logPath    string
	ports      servePorts
	nonDefault []string
	cpu        int // serve's own CPU, or -1
	// writer is serve's --bootstrap-secret-writer (secretWriter).
	writer injector.SecretWriter
	// ready is how long serve took from exec to /readyz answering 200 with
	// nothing in the apiserver yet (it creates the CA, the serving certs and
	// the registrations).
	ready   time.Duration
	done    chan error
	stopped bool
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
	free, err := freeport.LoopbackN(5)
	if err != nil {
		return nil, err
	}
	p := servePorts{injector: free[0], validator: free[1], converter: free[2], metrics: free[3], health: free[4]}
	args, nonDefault := serveArgs(kubeconfig, p, c.alg, c.serveArgs)
	if c.serveCPU >= 0 {
		nonDefault = append(nonDefault, placementText(c.serveCPU))
	}
	s := &serveProcess{bin: bin, args: args, cpu: c.serveCPU, logPath: cmp.Or(c.serveLog, filepath.Join(dir, "serve.log")), ports: p, nonDefault: nonDefault, writer: c.writer}
	if err := os.WriteFile(s.logPath, nil, 0o600); err != nil {
		return nil, err
	}
	if s.ready, err = s.launch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts serve (appending to its log) and returns how long it took
// from exec to /readyz answering 200.
func (s *serveProcess) launch(ctx context.Context) (time.Duration, error) {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	s.cmd = serveCommand(s.cpu, s.bin, s.args)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.done, s.stopped = make(chan error, 1), false
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return 0, fmt.Errorf("starting %s: %w", s.bin, err)
	}
	go func() {
		s.done <- s.cmd.Wait()
		_ = logFile.Close()
	}()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", s.ports.health)
	// From nothing on a busy machine: the CA (an RSA key unless ECDSA) and
	// three serving certificates are created first. Polled every 10 ms:
	// start to ready is a target of 1 s.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := get(ctx, readyz); err == nil {
			return time.Since(start), nil
		} else if time.Now().After(deadline) {
			_ = s.stop()
			return 0, fmt.Errorf("serve not ready after 3 minutes (%v); log:\n%s", err, s.logTail(20))
		}
		select {
		case err := <-s.done:
			s.done <- err
			return 0, fmt.Errorf("serve exited before it was ready (%v); log:\n%s", err, s.logTail(20))
		case <-ctx.Done():
			_ = s.stop()
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
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

// label says what runs, naming every setting that differs from what ships.
func (s *serveProcess) label() string {
	settings := "shipped defaults"
	if len(s.nonDefault) > 0 {
		settings = "shipped defaults except " + strings.Join(s.nonDefault, " ")
	}
	return fmt.Sprintf("injector: `fsm-webhooks serve` process (%s), %s (placement only otherwise: --kubeconfig, URL registration, loopback ports); start to ready %.2f s from nothing (it creates the CA, serving certs and registrations)",
		binaryVersion(s.bin), settings, s.ready.Seconds())
}

// usage is one sample of serve: its CPU time so far, resident memory and the
// metrics the figures need.
type usage struct {
	at            time.Time
	cpu           time.Duration
	rssKiB, hwKiB int64
	// injector is the injector's requests as serve times them (reviewhttp:
	// headers to answer, the bootstrap Secret's write included).
	injector     histogram
	hasHistogram bool
	// issuance is the mesh CA's per-certificate time (certmetrics: waiting
	// for a key from the pool, or generating it inline, and signing).
	issuance    histogram
	hasIssuance bool
	// work is the injector handler's own time, its Secret write excluded
	// (fsm_webhooks_injector_work_duration_seconds).
	work    histogram
	hasWork bool
	// secretWrite is the bootstrap Secret's create request, by either
	// writer (fsm_webhooks_injector_secret_write_duration_seconds).
	secretWrite    histogram
	hasSecretWrite bool
	// secretDelay is, with the controller writer, a pod's admission to its
	// Secret stored (fsm_webhooks_injector_secret_delay_seconds).
	secretDelay    histogram
	hasSecretDelay bool
	// written is the bootstrap Secrets serve created, by writer: admission,
	// controller, repair (fsm_webhooks_injector_bootstrap_secrets_written_total).
	written    map[string]float64
	hasWritten bool
	// handoffs is the Secrets the admission writer left to the controller,
	// by reason (busy, slow).
	handoffs    map[string]float64
	hasHandoffs bool
	// sched is how long serve's goroutines waited, runnable, for one of its
	// GOMAXPROCS processors (the Go runtime's go_sched_latencies_seconds).
	sched    histogram
	hasSched bool
	// ran and waited are serve's threads' time on a CPU and runnable on the
	// kernel's run queue without one (schedstat): what a starved machine
	// adds to every request's time, below anything serve can measure of
	// itself.
	ran, waited time.Duration
	// Key pools, summed over algorithms (keypool): keys asked of an empty
	// pool, misses served by their own inline generation, keys in stock.
	misses, inline, poolSize float64
	hasPool                  bool
}

func (s *serveProcess) sample(ctx context.Context) (usage, error) {
	u := usage{at: time.Now()}
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
	if u.ran, u.waited, err = procThreadsSchedstat(pid); err != nil {
		return u, fmt.Errorf("serve's threads' schedstat: %w", err)
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
	fams, err := parseMetrics(resp.Body)
	if err != nil {
		return u, err
	}
	if u.injector, u.hasHistogram, err = fams.histogramOf("fsm_webhooks_request_duration_seconds", map[string]string{"webhook": "injector"}); err != nil {
		return u, err
	}
	if u.issuance, u.hasIssuance, err = fams.histogramOf("fsm_webhooks_cert_issuance_duration_seconds", nil); err != nil {
		return u, err
	}
	if u.work, u.hasWork, err = fams.histogramOf("fsm_webhooks_injector_work_duration_seconds", nil); err != nil {
		return u, err
	}
	if u.secretWrite, u.hasSecretWrite, err = fams.histogramOf("fsm_webhooks_injector_secret_write_duration_seconds", nil); err != nil {
		return u, err
	}
	if u.secretDelay, u.hasSecretDelay, err = fams.histogramOf("fsm_webhooks_injector_secret_delay_seconds", nil); err != nil {
		return u, err
	}
	if u.sched, u.hasSched, err = fams.histogramOf("go_sched_latencies_seconds", nil); err != nil {
		return u, err
	}
	u.written, u.hasWritten = fams.byLabel("fsm_webhooks_injector_bootstrap_secrets_written_total", "writer")
	u.handoffs, u.hasHandoffs = fams.byLabel("fsm_webhooks_injector_bootstrap_secret_handoffs_total", "reason")
	u.misses, u.hasPool = fams.sum("fsm_webhooks_keypool_misses_total")
	u.inline, _ = fams.sum("fsm_webhooks_keypool_inline_used_total")
	u.poolSize, _ = fams.sum("fsm_webhooks_keypool_size")
	return u, nil
}

// sampler samples serve every period until stop, which returns the samples
// (the first taken at once) and the first sampling error.
func (s *serveProcess) sampler(ctx context.Context, period time.Duration) (stop func() ([]usage, error), err error) {
	first, err := s.sample(ctx)
	if err != nil {
		return nil, fmt.Errorf("sampling serve: %w", err)
	}
	samples := []usage{first}
	var firstErr error
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			u, err := s.sample(ctx)
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			samples = append(samples, u)
		}
	}()
	return func() ([]usage, error) {
		close(done)
		<-finished
		if u, err := s.sample(ctx); err == nil {
			samples = append(samples, u)
		}
		return samples, firstErr
	}, nil
}

// measure samples serve every second over the phase it brackets and reports
// its share: CPU, memory, the injector's latency as serve's histogram shows
// it, the CA's issuance time and the key pools' dry spells.
func (s *serveProcess) measure(ctx context.Context) (func(result) []string, error) {
	stop, err := s.sampler(ctx, time.Second)
	if err != nil {
		return nil, err
	}
	return func(res result) []string {
		samples, err := stop()
		if err != nil {
			return []string{fmt.Sprintf("serve: sampling failed: %v", err)}
		}
		return serveReport(samples, res, s.writer)
	}, nil
}

// serveReport is what the samples of one phase say about serve, whose
// bootstrap Secrets writer writes.
func serveReport(samples []usage, res result, writer injector.SecretWriter) []string {
	first, last := samples[0], samples[len(samples)-1]
	rss := rssSeries(samples, res.start)
	lo, hi := rss[0].v, rss[0].v
	for _, p := range rss {
		lo, hi = min(lo, p.v), max(hi, p.v)
	}
	out := []string{fmt.Sprintf("serve process: %.2f cores, RSS %.0f-%.0f MiB over the phase (sampled every second; last %.0f, peak since start %.0f MiB)",
		(last.cpu-first.cpu).Seconds()/last.at.Sub(first.at).Seconds(), lo, hi, rss[len(rss)-1].v, float64(last.hwKiB)/1024)}
	if !last.hasHistogram {
		out = append(out, "serve's injector latency is not exported by this build (use -in-process for the handler's own figures)")
	} else {
		h := last.injector.since(first.injector)
		write := "its Secret write included"
		if writer == injector.SecretWriterController {
			write = "no Secret write: the controller writes it after the pod is stored"
		}
		out = append(out, fmt.Sprintf("injector requests as serve timed them (histogram, interpolated; %s): p50 %.2f ms  p99 %.2f ms over %d",
			write, h.quantile(.50)*1000, h.quantile(.99)*1000, h.total()))
	}
	if last.hasWork {
		h := last.work.since(first.work)
		out = append(out, fmt.Sprintf("injector's own work as serve timed it (histogram, interpolated; everything but its Secret write): p50 %.3f ms  p99 %.3f ms over %d",
			h.quantile(.50)*1000, h.quantile(.99)*1000, h.total()))
	}
	if last.hasSecretWrite {
		h := last.secretWrite.since(first.secretWrite)
		out = append(out, fmt.Sprintf("bootstrap Secret create requests as serve timed them (histogram, interpolated; either writer): p50 %.2f ms  p99 %.2f ms over %d",
			h.quantile(.50)*1000, h.quantile(.99)*1000, h.total()))
	}
	if last.hasSecretDelay {
		if h := last.secretDelay.since(first.secretDelay); h.total() > 0 || writer == injector.SecretWriterController {
			out = append(out, fmt.Sprintf("admission → bootstrap Secret stored as serve timed it (controller writer, or Secrets handed off; histogram, interpolated): p50 %.2f ms  p99 %.2f ms over %d",
				h.quantile(.50)*1000, h.quantile(.99)*1000, h.total()))
		}
	}
	if last.hasWritten {
		out = append(out, "bootstrap Secrets serve wrote over the phase, by writer: "+writtenText(first.written, last.written))
	}
	if last.hasHandoffs && writer == injector.SecretWriterAdmission {
		out = append(out, fmt.Sprintf("bootstrap Secrets the admission writer handed to the controller (--injector-secret-handoff-*): busy %.0f, slow %.0f",
			last.handoffs["busy"]-first.handoffs["busy"], last.handoffs["slow"]-first.handoffs["slow"]))
	}
	if last.hasIssuance {
		h := last.issuance.since(first.issuance)
		out = append(out, fmt.Sprintf("certificate issuance as serve timed it (key from the pool or inline, and signing; part of the own work): p50 %.3f ms  p99 %.3f ms over %d",
			h.quantile(.50)*1000, h.quantile(.99)*1000, h.total()))
	}
	out = append(out, starvationReport(first, last)...)
	if last.hasPool {
		out = append(out, dryReport(samples, res)...)
	}
	return out
}

// starvationReport says how long serve waited for a CPU over the phase
// between first and last: what its own timings (the work histogram above
// all) include of the machine's load rather than of serve's work.
func starvationReport(first, last usage) []string {
	var out []string
	if ran := last.ran - first.ran; ran > 0 {
		waited := last.waited - first.waited
		out = append(out, fmt.Sprintf("serve's threads ran %.1f s and waited %.1f s more on the kernel's run queue for a CPU (%.2f s waited per s run: the machine's load, not serve's work)",
			ran.Seconds(), waited.Seconds(), waited.Seconds()/ran.Seconds()))
	}
	if last.hasSched {
		h := last.sched.since(first.sched)
		out = append(out, fmt.Sprintf("serve's goroutines waited, runnable, for a Go processor (go_sched_latencies_seconds; a request waits at several wake-ups): p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms over %d",
			h.quantile(.50)*1000, h.quantile(.99)*1000, h.quantile(.999)*1000, h.total()))
	}
	return out
}

// rssSeries is serve's RSS in MiB by time since start.
func rssSeries(samples []usage, start time.Time) []point {
	ps := make([]point, len(samples))
	for i, u := range samples {
		ps[i] = point{at: u.at.Sub(start), v: float64(u.rssKiB) / 1024}
	}
	return ps
}

// dryReport says when the key pools ran dry and what admissions that
// started then took.
func dryReport(samples []usage, res result) []string {
	ats := make([]time.Duration, len(samples))
	misses := make([]float64, len(samples))
	for i, u := range samples {
		ats[i], misses[i] = u.at.Sub(res.start), u.misses
	}
	first, last := samples[0], samples[len(samples)-1]
	dry, sustained := dryIntervals(ats, misses)
	out := []string{fmt.Sprintf("key pools: %.0f keys asked of an empty pool (%.0f generated inline, the rest served by a refill that landed first); dry in %d of %d one-second samples, %d of them after a dry second",
		last.misses-first.misses, last.inline-first.inline, len(dry), len(samples)-1, len(sustained))}
	for _, d := range []struct {
		name string
		ivs  []interval
	}{{"during dry seconds", dry}, {"during dry seconds after a dry second (pool empty longer than one key's refill)", sustained}} {
		calls := callsWithin(res.calls, d.ivs)
		if len(calls) == 0 {
			continue
		}
		var h histogram
		for i := 1; i < len(samples); i++ {
			iv := interval{ats[i-1], ats[i]}
			if slices.Contains(d.ivs, iv) {
				h = h.plus(samples[i].injector.since(samples[i-1].injector))
			}
		}
		lat := latencies(calls)
		out = append(out, fmt.Sprintf("  %s: create p99 %.2f ms over %d creates; serve's injector p99 %.2f ms over %d",
			d.name, ms(pct(lat, 99)), len(calls), h.quantile(.99)*1000, h.total()))
	}
	return out
}

// stop ends serve with SIGTERM, as the kubelet does, then SIGKILL.
func (s *serveProcess) stop() error {
	if s.cmd.Process == nil || s.stopped {
		return nil
	}
	s.stopped = true
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

func (s *serveProcess) regime() string { return regime(false, s.nonDefault) }
