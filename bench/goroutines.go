package bench

import (
	"context"
	"runtime"
	"time"
)

// settle polls the goroutine count until it is at most want or limit has
// passed, and returns the count and how long it took.
func settle(ctx context.Context, want int, limit time.Duration) (int, float64) {
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Since(start) >= limit {
			return n, time.Since(start).Seconds()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return n, time.Since(start).Seconds()
		}
	}
}

// sampleGoroutines watches the process's goroutine count until the
// returned function is called, which returns the highest seen.
func sampleGoroutines() (stop func() int) {
	done := make(chan struct{})
	peak := make(chan int, 1)
	// Stops when stop closes done.
	go func() {
		high := 0
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			high = max(high, runtime.NumGoroutine())
			select {
			case <-t.C:
			case <-done:
				peak <- high
				return
			}
		}
	}()
	return func() int {
		close(done)
		return <-peak
	}
}
