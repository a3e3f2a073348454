package tailbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{"nothing written", 4, nil, ""},
		{"under the limit", 8, []string{"ab", "cd"}, "abcd"},
		{"exactly the limit", 4, []string{"ab", "cd"}, "abcd"},
		{"across writes", 4, []string{"abc", "def"}, "cdef"},
		{"one write longer than the limit", 3, []string{"abcdefg"}, "efg"},
		{"many small writes", 2, []string{"a", "b", "c", "d"}, "cd"},
		{"limit below one keeps one byte", 0, []string{"xyz"}, "z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.limit)
			for _, w := range tc.writes {
				n, err := b.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBufferConcurrent writes whole lines from several goroutines (as a
// process's stdout and stderr do): every line kept must be intact and the
// size must be the limit. Run with -race to check the locking.
func TestBufferConcurrent(t *testing.T) {
	const limit, writers, lines = 64, 4, 200
	b := New(limit)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(b, "w%d-%03d\n", w, i)
			}
		})
	}
	wg.Wait()
	got := b.String()
	if len(got) != limit {
		t.Fatalf("kept %d bytes, want %d", len(got), limit)
	}
	// The first line may be cut; the rest are whole.
	_, rest, _ := strings.Cut(got, "\n")
	for _, l := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		if len(l) != len("w0-000") || l[0] != 'w' || l[2] != '-' {
			t.Errorf("torn line %q in %q", l, got)
		}
	}
}
