package freeport

import (
	"net"
	"strconv"
	"testing"
)

// The port is free: the caller can listen on it.
func TestLoopbackCanBeListenedOn(t *testing.T) {
	port := Must(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d is not a TCP port", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listening on the port Loopback returned: %v", err)
	}
	_ = l.Close()
}

// No port is handed out twice in a process, although the kernel may give a
// closed one again at once.
func TestLoopbackNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		port := Must(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}
