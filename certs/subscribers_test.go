package certs

import "testing"

func TestSubscribers(t *testing.T) {
	var s Subscribers
	s.Notify() // no subscribers: nothing to do, no panic
	var a, b int
	cancelA := s.OnBundleChange(func() { a++ })
	var cancelB func()
	cancelB = s.OnBundleChange(func() {
		b++
		cancelB() // a callback may unregister itself
	})
	s.Notify()
	s.Notify()
	if a != 2 || b != 1 {
		t.Fatalf("calls a=%d b=%d, want 2 and 1", a, b)
	}
	cancelA()
	cancelA() // idempotent
	s.Notify()
	if a != 2 {
		t.Fatalf("cancelled subscriber called: a=%d", a)
	}
}
