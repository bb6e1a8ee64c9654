package bridge

import (
	"fmt"
	"testing"
	"time"
)

// The limiter's key set is bounded however many identities come.
func TestLimiterIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 1, func() time.Time { return now })
	l.max = 100
	for i := range 10000 {
		if ok, _ := l.allow(fmt.Sprintf("addr:%d", i)); !ok {
			t.Fatalf("a new key's first request was refused")
		}
	}
	if n := l.size(); n > 100 {
		t.Fatalf("the limiter tracks %d keys, more than its bound of 100", n)
	}
	// A key that is still tracked keeps its bucket: its second request now
	// is over its rate.
	if ok, _ := l.allow("addr:9999"); ok {
		t.Fatalf("the newest key got a fresh bucket")
	}
}
