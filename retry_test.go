package safefind

import (
	"testing"
	"time"
)

// The backoff grows from base, stays within max, and is 0 when base is.
func TestBackoff(t *testing.T) {
	c := retryConfig{base: 10 * time.Millisecond, max: time.Second}
	for attempt := 1; attempt < 100; attempt++ {
		ceiling := min(time.Second, 10*time.Millisecond<<min(attempt-1, 20))
		for range 20 {
			if d := c.backoff(attempt); d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	if d := (retryConfig{base: 0, max: time.Second}).backoff(3); d != 0 {
		t.Errorf("base 0: %v", d)
	}
	if d := (retryConfig{base: time.Hour, max: time.Hour}).backoff(80); d > time.Hour {
		t.Errorf("no overflow: %v", d)
	}
}
