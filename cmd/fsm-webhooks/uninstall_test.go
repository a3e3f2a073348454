package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestUninstallHookStopsOnSIGTERM: the pre-delete Job's pod gets SIGTERM
// when helm uninstall is interrupted or the Job is deleted; the hook ends
// its run as on a timeout (releasing the conversion-owner Lease it may
// hold: TestRunFreesTheLeaseWhenStopped) instead of dying mid-step. The
// apiserver here accepts connections and never answers, so the only way
// out before the 1 m --timeout is the signal.
func TestUninstallHookStopsOnSIGTERM(t *testing.T) {
	kubeconfig, accepted := hungAPIServer(t)
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"uninstall-hook", "--kubeconfig=" + kubeconfig, "--timeout=1m"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	select {
	case <-accepted: // the command runs, its signal handler installed
	case err := <-done:
		t.Fatalf("uninstall-hook returned before reaching the apiserver: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("uninstall-hook never reached the apiserver")
	}
	start := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("uninstall-hook returned %v after SIGTERM; want the cancellation", err)
		}
		t.Logf("returned %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("uninstall-hook still running 20 s after SIGTERM")
	}
}

// TestTimeoutIsNamed: uninstall-hook and install-crds stop at --timeout
// (the chart's hook Jobs pass it from their timeoutSeconds). They ended
// with the client's "context deadline exceeded" alone, which names neither
// the flag nor its value, so the on-call engineer reading the hook Job's
// log could not tell a timeout the command set from a network one, nor
// which knob to turn. The error now names --timeout and that a run again
// resumes (every step of both is idempotent). certs status had no
// deadline at all: against an apiserver that accepted the connection and
// never answered (a wedged control plane, a half-open load balancer) it
// hung for ever, which is when an operator runs it.
func TestTimeoutIsNamed(t *testing.T) {
	kubeconfig, _ := hungAPIServer(t)
	for _, command := range []string{"uninstall-hook", "install-crds", "certs status"} {
		t.Run(command, func(t *testing.T) {
			root := newRootCommand()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(append(strings.Fields(command), "--kubeconfig="+kubeconfig, "--timeout=1s"))
			err := root.Execute()
			if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "--timeout=1s") {
				t.Errorf("%s with an apiserver that never answers: %v; want the deadline, naming --timeout=1s", command, err)
			}
		})
	}
}

// hungAPIServer is the path of a kubeconfig whose apiserver accepts
// connections and never answers, and a channel that is ready once it has
// accepted one (a command reached it).
func hungAPIServer(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://%s"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, ln.Addr())
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig, accepted
}
