// Package memlimit sets the Go runtime's soft memory limit from the
// container's memory limit, for every trainyard process (the manager, the
// bridge, the agent): near it the GC works harder rather than let the pod be
// OOM-killed.
package memlimit

import (
	"os"
	"runtime/debug"
	"strconv"
)

// EnvContainerLimit is the container's memory limit in bytes, which the
// chart passes from the pod's limits.memory (resourceFieldRef).
const EnvContainerLimit = "TRAINYARD_MEMORY_LIMIT"

// Apply sets the soft limit from the environment, unless GOMEMLIMIT (the
// runtime's own) is set or no container limit is.
func Apply() {
	if limit, ok := Soft(os.Getenv("GOMEMLIMIT"), os.Getenv(EnvContainerLimit)); ok {
		debug.SetMemoryLimit(limit)
	}
}

// Soft is the soft memory limit for a container limit: 90 % of it, leaving
// room for what is not heap; for example while an informer relists a
// 100,000-report fleet and briefly holds two copies. GOMEMLIMIT, when set,
// wins.
func Soft(gomemlimit, containerLimit string) (int64, bool) {
	if gomemlimit != "" {
		return 0, false
	}
	limit, err := strconv.ParseInt(containerLimit, 10, 64)
	if err != nil || limit <= 0 {
		return 0, false
	}
	return limit / 10 * 9, true
}
