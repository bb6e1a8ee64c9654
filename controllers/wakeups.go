package controllers

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// wakeups enqueues an object at an exact future time on a clock: one
// schedule per object, replaced when rescheduled. It is a controller
// source, so the queue is its own; with a fake clock, tests move time and
// the reconcile follows without sleeping.
//
// The schedules are a heap under one timer, armed for the earliest: every
// report has one (its stale deadline), and a timer of the clock's per
// object held about 450 bytes of the manager's heap per report (45 MB at
// 100,000 clusters); an entry here holds about a quarter of that.
type wakeups struct {
	clock clock.WithDelayedExecution

	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
	due     wakeHeap
	byKey   map[types.NamespacedName]*wake
	timer   clock.Timer // fires at timerAt, the earliest schedule's time
	timerAt time.Time
	stopped bool
}

type wake struct {
	key types.NamespacedName
	at  time.Time
	i   int // its index in the heap
}

func newWakeups(c clock.WithDelayedExecution) *wakeups {
	return &wakeups{clock: c, byKey: map[types.NamespacedName]*wake{}}
}

// Start implements source.Source.
func (w *wakeups) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = q
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.stopped = true
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
		w.due, w.byKey = nil, map[types.NamespacedName]*wake{}
	}()
	return nil
}

func (w *wakeups) String() string { return "wakeups" }

// At schedules a reconcile of key at t, replacing any earlier schedule.
func (w *wakeups) At(key types.NamespacedName, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if !t.After(w.clock.Now()) && w.queue != nil {
		// Already due (a fake clock would otherwise wait for its next step).
		w.remove(key)
		w.queue.Add(reconcile.Request{NamespacedName: key})
		w.arm()
		return
	}
	if e, ok := w.byKey[key]; ok {
		e.at = t
		heap.Fix(&w.due, e.i)
	} else {
		e := &wake{key: key, at: t}
		heap.Push(&w.due, e)
		w.byKey[key] = e
	}
	w.arm()
}

// Cancel drops key's schedule.
func (w *wakeups) Cancel(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.remove(key)
	w.arm()
}

func (w *wakeups) remove(key types.NamespacedName) {
	if e, ok := w.byKey[key]; ok {
		heap.Remove(&w.due, e.i)
		delete(w.byKey, key)
	}
}

// arm sets the timer for the earliest schedule (none when there is none).
// Called with w.mu held.
func (w *wakeups) arm() {
	if len(w.due) == 0 || w.stopped {
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
		return
	}
	next := w.due[0].at
	if w.timer != nil && w.timerAt.Equal(next) {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	d := next.Sub(w.clock.Now())
	if d <= 0 {
		// Due already (a fake clock stepped past it before this ran): a
		// fake clock's timer would wait for its next step.
		go w.fire()
		return
	}
	w.timerAt = next
	w.timer = w.clock.AfterFunc(d, func() {
		// On its own goroutine: a fake clock runs this under its lock, and
		// At (holding w.mu) may be waiting for that lock to read the time.
		go w.fire()
	})
}

// fire enqueues every schedule that is due and arms the timer for the
// next.
func (w *wakeups) fire() {
	w.mu.Lock()
	now := w.clock.Now()
	var keys []types.NamespacedName
	for len(w.due) > 0 && !w.due[0].at.After(now) {
		e := heap.Pop(&w.due).(*wake)
		delete(w.byKey, e.key)
		keys = append(keys, e.key)
	}
	if w.timer != nil {
		w.timer.Stop() // this one, or one armed since: arm sets the next
		w.timer = nil
	}
	w.arm()
	q := w.queue
	w.mu.Unlock()
	if q == nil {
		return
	}
	for _, k := range keys {
		q.Add(reconcile.Request{NamespacedName: k})
	}
}

// wakeHeap orders schedules by time (container/heap).
type wakeHeap []*wake

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h wakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}
func (h *wakeHeap) Push(x any) {
	e := x.(*wake)
	e.i = len(*h)
	*h = append(*h, e)
}
func (h *wakeHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
