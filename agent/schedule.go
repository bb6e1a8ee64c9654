package agent

import (
	"math/rand/v2"
	"time"
)

// nextCheckIn is the wait before the next scheduled check-in: the interval
// moved by up to ±jitter of itself, so that a fleet restarted together does
// not check in together. r is a random number in [0, 1).
func nextCheckIn(interval time.Duration, jitter, r float64) time.Duration {
	return time.Duration(float64(interval) * (1 + jitter*(2*r-1)))
}

// backoff is the wait before retry n (0-based) after a failure: doubling
// from base up to max, and never sooner than the server's Retry-After.
func backoff(n int, base, max, retryAfter time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

// random is the source of jitter (a field so tests can fix it).
var random = rand.Float64
