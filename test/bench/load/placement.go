package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// -serve-cpu gives serve a CPU of its own, as in a cluster where the webhook
// runs on a worker node and the apiserver on the control plane: on two
// shared cores the injector's own-work tail is waiting for a core
// (docs/performance.md), and this placement measures it without that.

// checkServeCPU reports whether cpu can be given to serve alone: this process
// must be allowed on it and on at least one other CPU.
func checkServeCPU(cpu int) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("reading this process's CPU affinity: %w", err)
	}
	if !set.IsSet(cpu) {
		return fmt.Errorf("CPU %d is not one this process may run on (%d allowed)", cpu, set.Count())
	}
	if set.Count() < 2 {
		return fmt.Errorf("only CPU %d is allowed: nothing would be left for the apiserver", cpu)
	}
	return nil
}

// pinAwayFrom keeps every thread of this process off cpu, so that the
// processes it starts afterwards (kube-apiserver, etcd) inherit an affinity
// without it. Affinity is per thread on Linux and a new thread takes its
// creator's, hence all current threads.
func pinAwayFrom(cpu int) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("reading this process's CPU affinity: %w", err)
	}
	set.Clear(cpu)
	// Until a pass finds no thread left on cpu: one an unpinned thread
	// started while the last pass ran took the old affinity.
	for pass := 0; ; pass++ {
		moved, err := pinThreads(&set, cpu)
		if err != nil {
			return err
		}
		if moved == 0 {
			return nil
		}
		if pass == 10 {
			return fmt.Errorf("threads kept appearing on CPU %d while pinning", cpu)
		}
	}
}

// pinThreads gives each thread of this process still allowed on cpu the
// affinity set, returning how many it moved.
func pinThreads(set *unix.CPUSet, cpu int) (int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("listing this process's threads: %w", err)
	}
	moved := 0
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		var cur unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &cur); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // exited
			}
			return 0, fmt.Errorf("reading thread %d's CPU affinity: %w", tid, err)
		}
		if !cur.IsSet(cpu) {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return 0, fmt.Errorf("pinning thread %d off CPU %d: %w", tid, cpu, err)
		}
		moved++
	}
	return moved, nil
}

// serveCommand runs bin with args, on cpu alone when cpu ≥ 0 (taskset
// execs it: the pid, and with it the figures read from /proc, stay serve's).
func serveCommand(cpu int, bin string, args []string) *exec.Cmd {
	if cpu < 0 {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), bin}, args...)...)
}

// placementText is the placement as printed next to every figure.
func placementText(cpu int) string {
	return fmt.Sprintf("placement: serve alone on CPU %d (taskset), kube-apiserver, etcd and this tool on the others", cpu)
}
