package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// allowedCPUs is Cpus_allowed_list of a process's /proc status.
func allowedCPUs(t *testing.T, status string) string {
	t.Helper()
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list in %q", status)
	return ""
}

// cpuList parses a Cpus_allowed_list ("0-3,5").
func cpuList(t *testing.T, list string) map[int]bool {
	t.Helper()
	cpus := map[int]bool{}
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			t.Fatalf("CPU list %q", list)
		}
		for i := a; i <= b; i++ {
			cpus[i] = true
		}
	}
	return cpus
}

func twoCPUs(t *testing.T) (keep, serve int) {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		t.Skipf("placement needs two CPUs; this process may use %v", cpus)
	}
	return cpus[0], cpus[len(cpus)-1]
}

// TestServeCommandPinsServe: serve, started through taskset, may run on its
// CPU only, under its own pid.
func TestServeCommandPinsServe(t *testing.T) {
	_, cpu := twoCPUs(t)
	out, err := serveCommand(cpu, "cat", []string{"/proc/self/status"}).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := allowedCPUs(t, string(out)); got != strconv.Itoa(cpu) {
		t.Errorf("serve's Cpus_allowed_list %q, want %d", got, cpu)
	}
	if !strings.Contains(string(out), "Name:\tcat") {
		t.Errorf("taskset did not exec the command in place:\n%s", out)
	}
	if got := serveCommand(-1, "cat", nil).Args; len(got) != 1 || got[0] != "cat" {
		t.Errorf("no pinning: command %v, want cat alone", got)
	}
}

// TestPinAwayFrom: after pinAwayFrom, no thread of the process may run on
// the CPU, and processes it starts (the apiserver, etcd) inherit that. Run
// in a child process, as pinning cannot be undone thread by thread.
func TestPinAwayFrom(t *testing.T) {
	if cpu := os.Getenv("PIN_AWAY_FROM"); cpu != "" {
		n, err := strconv.Atoi(cpu)
		if err != nil {
			t.Fatal(err)
		}
		if err := pinAwayFrom(n); err != nil {
			t.Fatal(err)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			status, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
			if err != nil {
				continue // exited
			}
			var set unix.CPUSet
			tid, _ := strconv.Atoi(task.Name())
			if err := unix.SchedGetaffinity(tid, &set); err == nil && set.IsSet(n) {
				t.Errorf("thread %s still allowed on CPU %d: %s", task.Name(), n, allowedCPUs(t, string(status)))
			}
		}
		out, err := exec.Command("cat", "/proc/self/status").Output()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("child allowed: " + allowedCPUs(t, string(out)))
		return
	}
	keep, cpu := twoCPUs(t)
	if err := checkServeCPU(cpu); err != nil {
		t.Fatalf("checkServeCPU(%d): %v", cpu, err)
	}
	if err := checkServeCPU(4096); err == nil {
		t.Error("checkServeCPU(4096): no error")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPinAwayFrom$", "-test.v")
	cmd.Env = append(os.Environ(), "PIN_AWAY_FROM="+strconv.Itoa(cpu))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "child allowed: ")
	if !ok {
		t.Fatalf("child printed no affinity:\n%s", out)
	}
	list, _, _ := strings.Cut(after, "\n")
	allowed := cpuList(t, list)
	if allowed[cpu] || !allowed[keep] {
		t.Errorf("a process started after pinning away from CPU %d may run on %q, want CPU %d and not %d", cpu, list, keep, cpu)
	}
	if keep == cpu {
		t.Fatal("test picked one CPU twice")
	}
	t.Logf("%s", out)
}
