//go:build e2enode

package node_test

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Pipy 1.5.12 (and its main branch as of 2026-06) can hang in its own exit,
// after main has returned: the static Exec::ChildProcessMonitor starts its
// thread from its constructor's member initialisers, and src/filters/exec.hpp
// declares m_thread before m_mutex and m_workload_cv. A thread that reaches
// its condition variable wait before the constructor gets to
// m_workload_cv has its wait wiped by that constructor, so the destructor's
// notify_one finds no waiter and its join waits forever: the process ends
// only by SIGKILL, the kubelet's at the end of the grace period. Whether a
// process is affected is decided by that race at its start (about one Pipy
// in ten here, run by hand on the host: a main thread in
// ~ChildProcessMonitor -> std::thread::join, the monitor thread in
// pthread_cond_wait on s_child_process_monitor+96, by gdb).
const pipyMonitorSymbol = "_ZN4pipy4Exec23s_child_process_monitorE" // pipy::Exec::s_child_process_monitor

// futexSyscall is futex(2)'s number in /proc/<pid>/task/<tid>/syscall.
var futexSyscall = map[string]int{"amd64": 202, "arm64": 98}[runtime.GOARCH]

// threadWait is what /proc/<pid>/task/<tid>/syscall says a thread is
// blocked in: futex with uaddr, or something else.
type threadWait struct {
	tid   int
	futex bool
	uaddr uint64
}

// stuckInMonitorJoin is the decision: the process has only its main thread
// and one other left (its worker threads ended, so main has returned), the
// main thread waits on a futex (the join), and the other waits on a futex
// inside the monitor object [lo, hi) (its condition variable).
func stuckInMonitorJoin(pid int, threads []threadWait, lo, hi uint64) bool {
	if len(threads) != 2 {
		return false
	}
	mainWaits, monitorWaits := false, false
	for _, th := range threads {
		switch {
		case !th.futex:
			return false
		case th.tid == pid:
			mainWaits = true
		case th.uaddr >= lo && th.uaddr < hi:
			monitorWaits = true
		}
	}
	return mainWaits && monitorWaits
}

// pipyStuckInExit reads the threads of the Pipy process pid (a host PID)
// and says, with a description, whether it is in the hang above. It needs
// only /proc and the process's own executable (unstripped, as Pipy's
// release builds and this suite's are); an error says why it cannot tell.
func pipyStuckInExit(pid int) (string, error) {
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return "", err
	}
	lo, size, err := symbolAt(proc, exe, pipyMonitorSymbol)
	if err != nil {
		return "", err
	}
	tasks, err := filepath.Glob(proc + "/task/*")
	if err != nil {
		return "", err
	}
	var threads []threadWait
	for _, task := range tasks {
		tid, err := strconv.Atoi(filepath.Base(task))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(task + "/syscall")
		if err != nil {
			return "", err
		}
		threads = append(threads, parseSyscall(tid, string(b), futexSyscall))
	}
	if !stuckInMonitorJoin(pid, threads, lo, lo+size) {
		return "", nil
	}
	return fmt.Sprintf("Pipy (pid %d) returned from main and its exit waits forever to join Exec::ChildProcessMonitor's thread, "+
		"which sleeps on the monitor's condition variable (%#x in %s) that the monitor's own constructor reset after the thread began waiting "+
		"(src/filters/exec.hpp declares m_thread before m_mutex and m_workload_cv): a Pipy bug decided at the process's start", pid, lo, pipyMonitorSymbol), nil
}

// parseSyscall reads one /proc/<pid>/task/<tid>/syscall line (the syscall
// number and its arguments in hex, or "running"), futexNr being futex(2)'s
// number.
func parseSyscall(tid int, line string, futexNr int) threadWait {
	f := strings.Fields(line)
	th := threadWait{tid: tid}
	if len(f) < 2 {
		return th
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil || futexNr == 0 || nr != futexNr {
		return th
	}
	uaddr, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
	if err != nil {
		return th
	}
	th.futex, th.uaddr = true, uaddr
	return th
}

// symbolAt is the run-time address and size of the executable's symbol name
// in process proc: its ELF value plus the load bias, the start of the
// executable's first mapping less the lowest PT_LOAD address (zero for a
// position-independent executable).
func symbolAt(proc, exe, name string) (addr, size uint64, err error) {
	f, err := elf.Open(proc + "/exe")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", exe, err)
	}
	var sym *elf.Symbol
	for i := range syms {
		if syms[i].Name == name {
			sym = &syms[i]
			break
		}
	}
	if sym == nil {
		return 0, 0, fmt.Errorf("%s has no symbol %s", exe, name)
	}
	lowest := ^uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			lowest = min(lowest, p.Vaddr&^(p.Align-1))
		}
	}
	maps, err := os.ReadFile(proc + "/maps")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(maps)) {
		// start-end perms offset dev inode path
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe {
			continue
		}
		start, err := strconv.ParseUint(f[0][:strings.IndexByte(f[0], '-')], 16, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s/maps: %q: %w", proc, line, err)
		}
		return start - lowest + sym.Value, sym.Size, nil
	}
	return 0, 0, errors.New(proc + "/maps: no mapping of " + exe)
}

func TestStuckInMonitorJoin(t *testing.T) {
	const pid, lo, hi = 100, 0x5000, 0x5098
	mainJoin := threadWait{tid: pid, futex: true, uaddr: 0x7f00_0000_0990}
	monitorWait := threadWait{tid: 106, futex: true, uaddr: lo + 96}
	for _, tc := range []struct {
		name    string
		threads []threadWait
		want    bool
	}{
		{"main joining the monitor thread, which waits on the monitor's condition variable", []threadWait{mainJoin, monitorWait}, true},
		{"a worker thread left: main has not returned", []threadWait{mainJoin, monitorWait, {tid: 101, futex: true, uaddr: 0x7f00}}, false},
		{"main in epoll_wait: running", []threadWait{{tid: pid}, monitorWait}, false},
		{"the other thread waits elsewhere", []threadWait{mainJoin, {tid: 106, futex: true, uaddr: hi}}, false},
		{"the other thread not in a futex", []threadWait{mainJoin, {tid: 106}}, false},
		{"main alone", []threadWait{mainJoin}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stuckInMonitorJoin(pid, tc.threads, lo, hi); got != tc.want {
				t.Errorf("stuckInMonitorJoin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSyscall(t *testing.T) {
	const futexAMD64 = 202
	for _, tc := range []struct {
		line string
		want threadWait
	}{
		{"202 0x7f30a881d990 0x109 0x52d2 0x0 0x0 0xffffffff 0x7ffc24277a10 0x7f30a88a3e09\n", threadWait{tid: 7, futex: true, uaddr: 0x7f30a881d990}},
		{"232 0x3 0x7ffc2427 0x80 0xffffffff 0x0 0x0 0x7ffc24277a10 0x7f30a8927f16\n", threadWait{tid: 7}}, // epoll_wait
		{"running\n", threadWait{tid: 7}},
		{"", threadWait{tid: 7}},
	} {
		if got := parseSyscall(7, tc.line, futexAMD64); got != tc.want {
			t.Errorf("parseSyscall(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}
