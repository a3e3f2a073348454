// Package freeport finds a loopback TCP port for a server a test starts (a
// webhook listener, a Vault dev server), the one copy the test harnesses share.
package freeport

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

// handedOut are the ports Loopback returned in this process. The kernel may
// give a closed port again at once, and a harness asking for several ports
// before anything listens (serve's injector, validator and converter) got
// the same one twice: "--injector-port, --validator-port and
// --converter-port must differ, got 41253, 33837, 33837".
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Loopback returns a TCP port on 127.0.0.1 that nothing listened on a moment
// ago and that this process has not been given before. Another process may
// take it before the caller listens; the harnesses that can tell (vaultdev)
// retry with a new port.
func Loopback() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port: 100 ports in a row were ones this process was given before")
}

// LoopbackN is n ports from Loopback: all different, for a server that
// listens on several (the bench tools' serve).
func LoopbackN(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		p, err := Loopback()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// Must is Loopback failing t: for a server the test starts, or an address
// that must not answer.
func Must(t testing.TB) int {
	t.Helper()
	port, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
