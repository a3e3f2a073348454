package main

import (
	"strings"
	"testing"
	"time"
)

// TestClockAhead: how far the local clock runs ahead of the apiserver's,
// from one round trip and its Date header (whole seconds, truncated), and
// when rotate-root refuses it: past maxClockAhead, under the
// certs.ClockSkew its roots and certificates are backdated.
func TestClockAhead(t *testing.T) {
	server := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		sent, received time.Time
		date           time.Time
		want           time.Duration
		refused        bool
	}{
		{"in step, answered in 200 ms", server.Add(400 * time.Millisecond), server.Add(600 * time.Millisecond), server, 0, false},
		{"behind by a minute", server.Add(-time.Minute + 400*time.Millisecond), server.Add(-time.Minute + 600*time.Millisecond), server, -time.Minute, false},
		// Within what the certificates are backdated: valid in the
		// cluster at once.
		{"ahead by 3 min", server.Add(3*time.Minute + 400*time.Millisecond), server.Add(3*time.Minute + 600*time.Millisecond), server, 3 * time.Minute, false},
		{"ahead by 4m30s", server.Add(4*time.Minute + 30*time.Second + 400*time.Millisecond), server.Add(4*time.Minute + 30*time.Second + 600*time.Millisecond), server, 4*time.Minute + 30*time.Second, false},
		{"ahead by 4m31s", server.Add(4*time.Minute + 31*time.Second + 400*time.Millisecond), server.Add(4*time.Minute + 31*time.Second + 600*time.Millisecond), server, 4*time.Minute + 31*time.Second, true},
		{"ahead by 8 min, slow answer", server.Add(8 * time.Minute), server.Add(8*time.Minute + 2*time.Second), server.Add(time.Second), 8*time.Minute - 500*time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clockAhead(tc.sent, tc.received, tc.date)
			if got != tc.want {
				t.Errorf("clockAhead = %s, want %s", got, tc.want)
			}
			err := clockAheadProblem(got, tc.received, tc.date, rotateRootClock)
			if (err != nil) != tc.refused {
				t.Fatalf("clockAheadProblem(%s) = %v, want refused %v", got, err, tc.refused)
			}
			if err != nil && (!strings.Contains(err.Error(), "ahead of the apiserver's") || !strings.Contains(err.Error(), tc.date.Format(time.RFC3339))) {
				t.Errorf("error %q does not say how far ahead of which apiserver time", err)
			}
		})
	}
}
