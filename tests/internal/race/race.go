// Package race releases goroutines together, so that races really happen.
package race

import "sync"

// Release runs fn(0) … fn(n-1) in n goroutines that all wait at a barrier
// until every one of them has started, and returns when all are done.
func Release(n int, fn func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}
