package auth

import (
	"math"
	"sync/atomic"
	"time"
)

// limiter is a token bucket in the form of the generic cell rate algorithm: its whole
// state is one "theoretical arrival time", so taking a token is one atomic
// compare-and-swap with no lock, however many requests share the key.
//
// A request at now is allowed when, after it, the arrival time is at most tolerance
// (burst × interval) ahead of now; the arrival time then moves on by one interval.
type limiter struct {
	interval  int64        // nanoseconds per request at the sustained rate
	tolerance int64        // burst × interval
	tat       atomic.Int64 // theoretical arrival time, nanoseconds on Keys' clock
}

// newLimiter returns a limiter of rate requests per second with the given burst
// (0: the rate rounded up, at least 1), or nil for rate 0 (no limit).
func newLimiter(rate float64, burst int) *limiter {
	if !(rate > 0) {
		return nil
	}
	if burst <= 0 {
		burst = int(min(math.Ceil(rate), math.MaxInt32))
	}
	interval := int64(max(1, min(math.Round(float64(time.Second)/rate), math.MaxInt64/4)))
	tolerance := int64(burst) * interval
	if tolerance/interval != int64(burst) || tolerance > math.MaxInt64/4 {
		tolerance = math.MaxInt64 / 4 // a burst this large is no limit; keep clear of overflow
	}
	return &limiter{interval: interval, tolerance: tolerance}
}

// take takes one request's token, or says how long until one is free. It reads the
// clock after the state: a time read before another request's update would be stale
// against it, and a request paused in between would be refused for no reason.
func (l *limiter) take(clock func() int64) (wait time.Duration, ok bool) {
	for {
		tat := l.tat.Load()
		now := clock()
		next := max(tat, now) + l.interval
		if over := next - now - l.tolerance; over > 0 {
			return time.Duration(over), false
		}
		if l.tat.CompareAndSwap(tat, next) {
			return 0, true
		}
	}
}
