package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

// 100 agents started together spread their check-ins over the interval
// ±25 %, instead of arriving at once.
func TestJitterSpreadsAFleet(t *testing.T) {
	const interval = 15 * time.Minute
	rng := rand.New(rand.NewPCG(1, 2))
	buckets := make([]int, 10) // tenths of the ±25 % window
	lo, hi := time.Duration(float64(interval)*0.75), time.Duration(float64(interval)*1.25)
	for range 100 {
		d := nextCheckIn(interval, 0.25, rng.Float64())
		if d < lo || d >= hi {
			t.Fatalf("check-in after %s, outside [%s, %s)", d, lo, hi)
		}
		buckets[int(10*(d-lo)/(hi-lo))]++
	}
	for i, n := range buckets {
		// Uniform would put 10 in each; a fleet bunched in a few tenths fails.
		if n == 0 || n > 25 {
			t.Errorf("tenth %d of the window has %d of 100 agents: %v", i, n, buckets)
		}
	}
	if nextCheckIn(interval, 0.25, 0) != lo || nextCheckIn(interval, 0, 0.9) != interval {
		t.Error("the window's edges are wrong")
	}
}

func TestBackoffDoublesToACapAndHonoursRetryAfter(t *testing.T) {
	base, max := time.Second, time.Minute
	for n, want := range []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute} {
		if got := backoff(n, base, max, 0); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
	if got := backoff(0, base, max, 30*time.Second); got != 30*time.Second {
		t.Errorf("Retry-After 30s gave %s", got)
	}
	if got := backoff(10, base, max, 5*time.Second); got != time.Minute {
		t.Errorf("a short Retry-After shortened the backoff to %s", got)
	}
}

// The soft memory limit is the floor while the heap is small, and follows a
// large live heap up, so the GC never runs against a limit it cannot meet.
func TestMemoryLimitFollowsTheLiveHeap(t *testing.T) {
	for _, c := range []struct{ live, want int64 }{
		{5 << 20, DefaultMemoryFloor}, {12 << 20, DefaultMemoryFloor}, {100 << 20, 200 << 20},
	} {
		if got := MemoryLimitFor(c.live, DefaultMemoryFloor); got != c.want {
			t.Errorf("MemoryLimitFor(%d MiB) = %d MiB, want %d MiB", c.live>>20, got>>20, c.want>>20)
		}
	}
}
