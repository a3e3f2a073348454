package vaultdev

import (
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// LogLines records what a logger writes, one string per call, so that a test
// can assert what the Vault issuer logged. Safe for concurrent use.
type LogLines struct {
	mu    sync.Mutex
	lines []string
}

// Logger returns a logger that appends every line it writes to l.
func (l *LogLines) Logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{})
}

// Lines returns a copy of the lines written so far.
func (l *LogLines) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
