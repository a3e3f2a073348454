// Package tailbuf keeps the end of a stream: what a failing child process
// (a go build, a Vault dev server) printed last is what its error message
// needs, and the whole output can be far too long to carry.
package tailbuf

import "sync"

// Buffer is an io.Writer that keeps the last Limit bytes written to it. It is
// safe for concurrent use, so one Buffer can take a process's stdout and
// stderr.
type Buffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

// New returns a Buffer keeping the last limit bytes (at least one).
func New(limit int) *Buffer {
	return &Buffer{limit: max(limit, 1)}
}

// Write never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.limit {
		// Copy down instead of reslicing, so the backing array stays
		// bounded however much is written.
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.limit:]...)
	}
	return len(p), nil
}

// String is what the Buffer holds.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
