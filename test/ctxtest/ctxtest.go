// Package ctxtest holds contexts for tests of code that checks its
// request's context between units of work.
package ctxtest

import "context"

// Countdown is a context whose Err turns Canceled after Left checks, as a
// request's does when the apiserver closes the connection mid-review.
type Countdown struct {
	context.Context
	Left int
}

// Err is nil for the first Left calls, then context.Canceled.
func (c *Countdown) Err() error {
	if c.Left <= 0 {
		return context.Canceled
	}
	c.Left--
	return nil
}
