package certs

import "sync"

// Subscribers holds the callbacks of a BundleNotifier. The zero value is
// ready to use and it is safe for concurrent use.
type Subscribers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func()
}

// OnBundleChange registers f; the returned func unregisters it.
func (s *Subscribers) OnBundleChange(f func()) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[int]func(){}
	}
	id := s.next
	s.next++
	s.fns[id] = f
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fns, id)
	}
}

// Notify calls every registered func, outside the lock so a callback may
// register or cancel.
func (s *Subscribers) Notify() {
	s.mu.Lock()
	fns := make([]func(), 0, len(s.fns))
	for _, f := range s.fns {
		fns = append(fns, f)
	}
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
}
