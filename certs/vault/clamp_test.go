package vault

import (
	"testing"
	"time"
)

func TestShortened(t *testing.T) {
	const day, decade = 24 * time.Hour, 87600 * time.Hour
	for _, tc := range []struct {
		requested, granted time.Duration
		want               bool
	}{
		// FSM's documented role: a decade asked, a day granted.
		{decade, day, true},
		{decade, day + 30*time.Second, true},
		// Second-precision NotAfter and request latency: not a clamp.
		{decade, decade - 1500*time.Millisecond, false},
		{90 * time.Second, 89 * time.Second, false},
		{90 * time.Second, 84 * time.Second, true},
		// 1% of a day is 14m24s: small clock skew is tolerated.
		{day, day - 10*time.Minute, false},
		{day, day - 15*time.Minute, true},
		{day, 2 * day, false},
	} {
		if got := shortened(tc.requested, tc.granted); got != tc.want {
			t.Errorf("shortened(%s, %s) = %v, want %v", tc.requested, tc.granted, got, tc.want)
		}
	}
}

func TestClampLogFirst(t *testing.T) {
	const day, decade = 24 * time.Hour, 87600 * time.Hour
	var c clampLog
	for n, tc := range []struct {
		requested, granted time.Duration
		want               bool
	}{
		{decade, day - time.Second, true},
		// The same grant measured a second later or earlier.
		{decade, day, false},
		{decade, day - 2*time.Second, false},
		// Another requested validity clamped to the same day.
		{8760 * time.Hour, day, true},
		{8760 * time.Hour, day + time.Second, false},
		// The operator changed max_ttl.
		{decade, 48 * time.Hour, true},
		{decade, 48 * time.Hour, false},
		{decade, day, false},
		// Short roles (tests use 20-30s): one second of noise is one grant.
		{time.Hour, 20 * time.Second, true},
		{time.Hour, 19 * time.Second, false},
		{time.Hour, 30 * time.Second, true},
	} {
		if got := c.first(tc.requested, tc.granted); got != tc.want {
			t.Errorf("step %d: first(%s, %s) = %v, want %v", n, tc.requested, tc.granted, got, tc.want)
		}
	}
}

func TestClampLogBounded(t *testing.T) {
	var c clampLog
	for n := range 3 * clampLogSize {
		g := time.Duration(n+1) * time.Hour
		if !c.first(87600*time.Hour, g) {
			t.Fatalf("grant %s reported as seen", g)
		}
	}
	if len(c.logged) != clampLogSize {
		t.Fatalf("remembered %d grants, want %d", len(c.logged), clampLogSize)
	}
	// The newest are remembered, the oldest forgotten.
	if c.first(87600*time.Hour, time.Duration(3*clampLogSize)*time.Hour) {
		t.Error("newest grant forgotten")
	}
	if !c.first(87600*time.Hour, time.Hour) {
		t.Error("oldest grant still remembered")
	}
}

func TestDisplayValidity(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{24*time.Hour - 1500*time.Millisecond, 24 * time.Hour},
		{2*time.Hour - time.Second, 2 * time.Hour},
		{19600 * time.Millisecond, 20 * time.Second},
		{59 * time.Second, 59 * time.Second},
	} {
		if got := displayValidity(tc.in); got != tc.want {
			t.Errorf("displayValidity(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
