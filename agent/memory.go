package agent

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultMemoryFloor is the agent's soft memory limit while its live heap is
// small: the GC collects, and returns memory to the OS, before the heap
// grows past it, which keeps the agent under 50 MiB resident with 2,000
// workloads (make bench-agent, docs/performance.md).
const DefaultMemoryFloor = 24 << 20

// MemoryLimitFor is the soft memory limit for a live heap: the floor, or
// twice the live heap when that is more, so that in a large cluster the GC
// does not run non-stop against a limit the cache alone exceeds.
func MemoryLimitFor(live, floor int64) int64 {
	return max(floor, 2*live)
}

// TuneMemoryLimit keeps the process's soft memory limit at MemoryLimitFor
// the live heap, checking every interval, until ctx ends.
func TuneMemoryLimit(ctx context.Context, floor int64, every time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := func() {
		metrics.Read(sample)
		live := int64(0)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		debug.SetMemoryLimit(MemoryLimitFor(live, floor))
	}
	set()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			set()
		}
	}
}
