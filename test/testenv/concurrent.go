package testenv

import "sync"

// Concurrently runs fn(0) … fn(n-1) on workers goroutines and returns the
// errors, in no particular order: load tests create many objects at once
// through the apiserver.
func Concurrently(n, workers int, fn func(i int) error) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return errs
}
