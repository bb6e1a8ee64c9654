//go:build !race

package bridge

// raceEnabled: see race_on_test.go.
const raceEnabled = false
