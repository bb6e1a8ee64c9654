package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// wakeups enqueues an object at an exact future time on a clock: one timer
// per object, replaced when rescheduled. It is a controller source, so the
// queue is its own; with a fake clock, tests move time and the reconcile
// follows without sleeping.
type wakeups struct {
	clock clock.WithDelayedExecution

	mu     sync.Mutex
	queue  workqueue.TypedRateLimitingInterface[reconcile.Request]
	timers map[types.NamespacedName]clock.Timer
}

func newWakeups(c clock.WithDelayedExecution) *wakeups {
	return &wakeups{clock: c, timers: map[types.NamespacedName]clock.Timer{}}
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
		for k, t := range w.timers {
			t.Stop()
			delete(w.timers, k)
		}
	}()
	return nil
}

func (w *wakeups) String() string { return "wakeups" }

// At schedules a reconcile of key at t, replacing any earlier schedule.
func (w *wakeups) At(key types.NamespacedName, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.timers[key]; ok {
		old.Stop()
	}
	d := t.Sub(w.clock.Now())
	if d <= 0 && w.queue != nil {
		// Already due (a fake clock would otherwise wait for its next step).
		delete(w.timers, key)
		w.queue.Add(reconcile.Request{NamespacedName: key})
		return
	}
	w.timers[key] = w.clock.AfterFunc(d, func() {
		// On its own goroutine: a fake clock runs this under its lock, and
		// At (holding w.mu) may be waiting for that lock to read the time.
		go func() {
			w.mu.Lock()
			q := w.queue
			w.mu.Unlock()
			if q != nil {
				q.Add(reconcile.Request{NamespacedName: key})
			}
		}()
	})
}

// Cancel drops key's schedule.
func (w *wakeups) Cancel(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.timers[key]; ok {
		t.Stop()
		delete(w.timers, key)
	}
}
