package poll

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = strings.TrimSpace(format)
	for _, a := range args {
		f.msg += " " + toString(a)
	}
}

func toString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case error:
		return v.Error()
	case time.Duration:
		return v.String()
	}
	return ""
}

func TestUntil(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failUntil int // calls that fail before one succeeds; -1: never succeeds
		wantFatal string
	}{
		{name: "at once", failUntil: 0},
		{name: "after retries", failUntil: 3},
		{name: "never", failUntil: -1, wantFatal: "still closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fatalRecorder{TB: t}
			calls := 0
			Until(rec, 200*time.Millisecond, time.Millisecond, "the door", func() error {
				calls++
				if tc.failUntil < 0 || calls <= tc.failUntil {
					return errors.New("still closed")
				}
				return nil
			})
			if tc.wantFatal == "" {
				if rec.msg != "" {
					t.Fatalf("failed: %s", rec.msg)
				}
				if calls != tc.failUntil+1 {
					t.Errorf("cond called %d times, want %d", calls, tc.failUntil+1)
				}
				return
			}
			if !strings.Contains(rec.msg, "the door") || !strings.Contains(rec.msg, tc.wantFatal) {
				t.Errorf("failure %q names neither what nor the last error %q", rec.msg, tc.wantFatal)
			}
		})
	}
}
