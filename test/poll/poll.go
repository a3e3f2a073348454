// Package poll is the tests' one wait-for-a-condition loop, for conditions an
// apiserver or a server reaches eventually and that no watch reports.
package poll

import (
	"testing"
	"time"
)

// Until calls cond every interval until it returns nil. If timeout passes
// first it fails t, naming what it waited for and cond's last error, which
// is the one that says why.
func Until(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(interval)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}
