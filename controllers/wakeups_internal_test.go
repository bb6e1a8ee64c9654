package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Each key wakes at its last schedule, once; a cancelled one never; one
// already due at once. All under one timer.
func TestWakeupsFireEachKeyAtItsLastSchedule(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	w := newWakeups(clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	key := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "fleet", Name: n} }
	w.At(key("a"), t0.Add(time.Minute))
	w.At(key("b"), t0.Add(2*time.Minute))
	w.At(key("c"), t0.Add(3*time.Minute))
	w.At(key("a"), t0.Add(4*time.Minute)) // rescheduled later
	w.At(key("d"), t0.Add(time.Minute))
	w.Cancel(key("d"))
	w.At(key("e"), t0) // already due
	if got := drain(t, q, 1); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("at once: %v, want [e]", got)
	}

	clk.Step(time.Minute) // a's old time, d's cancelled one: nothing
	if got := drain(t, q, 0); len(got) != 0 {
		t.Fatalf("at +1m: %v, want nothing", got)
	}
	clk.Step(90 * time.Second) // past b
	if got := drain(t, q, 1); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("at +2m30s: %v, want [b]", got)
	}
	clk.Step(2 * time.Minute) // past c and a, in one step
	got := drain(t, q, 2)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("at +4m30s: %v, want [a c]", got)
	}
	w.mu.Lock()
	left, timer := len(w.due)+len(w.byKey), w.timer
	w.mu.Unlock()
	if left != 0 || timer != nil {
		t.Fatalf("after every wake-up: %d schedules left, timer %v", left, timer)
	}
}

// drain reads n keys from q (waiting for them), then checks that nothing
// more arrives for a moment.
func drain(t *testing.T, q workqueue.TypedRateLimitingInterface[reconcile.Request], n int) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if q.Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("waited 5s for %d wake-ups, got %v", n, got)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		r, _ := q.Get()
		q.Done(r)
		got = append(got, r.Name)
	}
	// A wake-up that should not come would come at once: the fake clock
	// fires on Step, on a goroutine of ours.
	time.Sleep(50 * time.Millisecond)
	if q.Len() != 0 {
		r, _ := q.Get()
		q.Done(r)
		t.Fatalf("got %v and then %s, want %d", got, r.Name, n)
	}
	return got
}
