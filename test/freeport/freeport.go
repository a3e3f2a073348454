// Package freeport finds a loopback TCP port for a server a test starts (a
// webhook listener, a Vault dev server), the one copy the test harnesses share.
package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Loopback returns a TCP port on 127.0.0.1 that nothing listened on a moment
// ago. Another process may take it before the caller listens; the harnesses
// that can tell (vaultdev) retry with a new port.
func Loopback() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
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
