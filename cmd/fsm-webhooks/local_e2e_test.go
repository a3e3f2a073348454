package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/syncbuf"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestLocalStopsCleanly runs the README's first command as a user does (the
// built binary, `local`, on free ports): it reaches each announced stage,
// and Ctrl-C (SIGINT) then ends it with exit status 0, stopping
// kube-apiserver and etcd, whether it came once the demo was done or while
// the webhooks were still starting (which used to end with "context
// canceled" and status 1).
func TestLocalStopsCleanly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fsm-webhooks")
	build := exec.Command("go", "build", "-o", bin, "./cmd/fsm-webhooks")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		after string // SIGINT once a line contains this
		// hangUp closes local's stdout instead of sending SIGINT, as
		// `local | head` does when head has read its lines.
		hangUp bool
		// status runs the `certs status` local suggests before SIGINT:
		// it must find the mesh local serves healthy (exit 0). With
		// another mesh name it checked mesh fsm and failed.
		status bool
	}{
		{"after the demo", []string{"--mesh-name=demo", "--ca-bundle-secret-name=demo-ca"}, "Press Ctrl-C to stop.", false, true},
		{"while the webhooks start", []string{"--no-demo"}, "starting the injector, validator and converter", false, false},
		{"when its reader goes away", []string{"--no-demo"}, "starting the injector, validator and converter", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports, err := freeport.LoopbackN(3)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"local", "--metrics-bind-address=0", "--health-probe-bind-address=0",
				"--injector-port=" + strconv.Itoa(ports[0]), "--validator-port=" + strconv.Itoa(ports[1]), "--converter-port=" + strconv.Itoa(ports[2])}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			var stderr syncbuf.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var lines []string
			reached := make(chan struct{})
			scanned := make(chan struct{})
			go func() {
				defer close(scanned)
				sc := bufio.NewScanner(stdout)
				once := sync.OnceFunc(func() { close(reached) })
				for sc.Scan() {
					mu.Lock()
					lines = append(lines, sc.Text())
					mu.Unlock()
					if strings.Contains(sc.Text(), tc.after) {
						once()
					}
				}
			}()
			select {
			case <-reached:
			case <-scanned:
				t.Fatalf("local ended before %q:\n%s", tc.after, strings.Join(lines, "\n"))
			case <-ctx.Done():
				t.Fatalf("no %q within 5 minutes:\n%s", tc.after, strings.Join(lines, "\n"))
			}
			children := childrenOf(cmd.Process.Pid)
			if len(children) == 0 {
				t.Fatal("local runs no child process (etcd, kube-apiserver)")
			}
			// A failure here must not leave them running on the machine.
			t.Cleanup(func() {
				for _, pid := range children {
					if alive(pid) {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			if tc.hangUp {
				// local's next line goes to a closed pipe.
				_ = stdout.Close()
				<-scanned
				err := cmd.Wait()
				if err != nil {
					t.Errorf("local with its stdout closed: %v\nstderr:\n%s", err, stderr.String())
				}
				for _, pid := range children {
					if alive(pid) {
						t.Errorf("process %d (%s) started by local outlived it once its stdout closed", pid, cmdline(pid))
					}
				}
				return
			}
			if tc.status {
				mu.Lock()
				suggested := slices.Clone(lines)
				mu.Unlock()
				runSuggestedStatus(ctx, t, bin, suggested)
			}
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			<-scanned
			err = cmd.Wait()
			mu.Lock()
			out := strings.Join(lines, "\n")
			mu.Unlock()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("after SIGINT local exited with status %d, want 0:\n%s", ee.ExitCode(), out)
				}
				t.Fatal(err)
			}
			for _, want := range []string{"interrupted: stopping the webhooks", "stopping kube-apiserver and etcd"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			// client-go's klog lines (leader election) go through serve's
			// logger at its level, not klog's own text to stderr.
			if m := klogLine.FindString(stderr.String()); m != "" {
				t.Errorf("a klog line bypassed --log-level: %q\nstderr:\n%s", m, stderr.String())
			}
			for _, pid := range children {
				if alive(pid) {
					t.Errorf("process %d (%s) started by local outlived it", pid, cmdline(pid))
				}
			}
		})
	}
}

// runSuggestedStatus runs the `certs status` command of local's output
// (lines) with the kubeconfig it prints, as the user does in another shell,
// and requires the mesh local serves to be healthy.
func runSuggestedStatus(ctx context.Context, t *testing.T, bin string, lines []string) {
	t.Helper()
	var kubeconfig string
	var args []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "export KUBECONFIG="); ok {
			kubeconfig = v
		}
		if v, ok := strings.CutPrefix(l, "go run ./cmd/fsm-webhooks "); ok {
			args = strings.Fields(v)
		}
	}
	if kubeconfig == "" || len(args) < 2 || args[0] != "certs" || args[1] != "status" {
		t.Fatalf("no kubeconfig (%q) or certs status command (%q) in local's output:\n%s", kubeconfig, args, strings.Join(lines, "\n"))
	}
	status := exec.CommandContext(ctx, bin, args...)
	status.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := status.CombinedOutput()
	if err != nil {
		t.Errorf("the suggested `fsm-webhooks %s`: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// klogLine is klog's own text format: "I1205 15:04:05.000000 ...".
var klogLine = regexp.MustCompile(`(?m)^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ .*$`)

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// alive reports a process that exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}
