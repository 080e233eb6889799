package main

import (
	"math"
	"slices"
	"time"
)

// median returns the median of xs (the mean of the middle two when their
// number is even); xs must not be empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

// latencyGrowth is the ratio between the bounds of a latency bucket: a
// quantile is known to within 2%.
const latencyGrowth = 1.02

// latencies is a histogram of call latencies. A cell given a time budget
// makes too many calls (tens of thousands per second on SQLite) to keep
// each one's latency over all its runs.
type latencies struct {
	buckets []int64 // bucket i: latencies in [growth^i, growth^(i+1)) ns
	n       int64
}

func (l *latencies) add(d time.Duration) {
	i := 0
	if d > 1 {
		i = int(math.Log(float64(d)) / math.Log(latencyGrowth))
	}
	if i >= len(l.buckets) {
		l.buckets = append(l.buckets, make([]int64, i+1-len(l.buckets))...)
	}
	l.buckets[i]++
	l.n++
}

// quantile returns the latency below which a share q of the calls fell:
// the geometric middle of its bucket; 0 with no calls.
func (l *latencies) quantile(q float64) time.Duration {
	rank := int64(q * float64(l.n)) // the rank-th latency, from 0
	var seen int64
	for i, n := range l.buckets {
		seen += n
		if seen > rank {
			return time.Duration(math.Pow(latencyGrowth, float64(i)+0.5))
		}
	}
	return 0
}
