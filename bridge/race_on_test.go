//go:build race

package bridge

// raceEnabled: the race detector's instrumentation allocates, so the
// allocation bounds are checked only without it (`make test` runs both).
const raceEnabled = true
