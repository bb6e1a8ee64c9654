package memlimit

import "testing"

func TestSoftMemoryLimitIsNinetyPercentOfTheContainers(t *testing.T) {
	for _, tc := range []struct {
		gomemlimit, container string
		want                  int64
		ok                    bool
	}{
		{"", "1073741824", 966367638, true}, // a 1 GiB limit
		{"", "536870912", 483183819, true},
		{"800MiB", "1073741824", 0, false}, // GOMEMLIMIT is the runtime's own
		{"", "", 0, false},                 // no limit (make dev, a test)
		{"", "max", 0, false},
		{"", "0", 0, false},
	} {
		got, ok := Soft(tc.gomemlimit, tc.container)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Soft(%q, %q) = %d, %v; want %d, %v", tc.gomemlimit, tc.container, got, ok, tc.want, tc.ok)
		}
	}
}
