package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitQueued waits until n requests wait in l.
func waitQueued(t *testing.T, l *level, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		w := l.waiting
		l.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", w, n)
		}
		time.Sleep(time.Millisecond) // polling a lock-protected counter; no event to wait on
	}
}

// A client with many queued requests does not go in front of one that
// sends a single request after them: queues are served in turn.
func TestLevelServesQueuesInTurn(t *testing.T) {
	l := newLevel(priorityAnonymous, 1, 1<<20)
	hold, why := l.acquire(context.Background(), "occupant", 0, true)
	if why != "" {
		t.Fatal(why)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(id string) {
		wg.Go(func() {
			release, why := l.acquire(context.Background(), id, 0, true)
			if why != "" {
				t.Errorf("%s refused: %s", id, why)
				return
			}
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
			release.release()
		})
	}
	const flood = 40
	for i := range flood {
		enqueue("flood")
		waitQueued(t, l, i+1)
	}
	enqueue("single")
	waitQueued(t, l, flood+1)
	hold.release()
	wg.Wait()
	pos := -1
	for i, id := range order {
		if id == "single" {
			pos = i
		}
	}
	// The flood holds at most a hand of queues: the single request is
	// served within a round of them, not after all 40 (FIFO would be 40).
	if pos < 0 || pos > handSize {
		t.Fatalf("the single request was served %dth of %d: %v", pos+1, len(order), order)
	}
	assertIdle(t, l)
}

// A request waits for body bytes as for a seat, and a refused or
// cancelled one leaves nothing held.
func TestLevelBodyBudget(t *testing.T) {
	l := newLevel(priorityCluster, 16, 400)
	if l.perBytes != 100 {
		t.Fatalf("one identity's bytes: %d", l.perBytes)
	}
	releases := make([]*ticket, 0, 4)
	for i := range 4 {
		r, why := l.acquire(context.Background(), fmt.Sprint("c", i), 100, true)
		if why != "" {
			t.Fatal(why)
		}
		releases = append(releases, r)
	}
	// The budget is spent: the next waits, and a cancelled wait is refused.
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan refusal, 1)
	go func() {
		_, why := l.acquire(ctx, "late", 50, true)
		got <- why
	}()
	waitQueued(t, l, 1)
	cancel()
	if why := <-got; why != refusedTimeout {
		t.Fatalf("a cancelled wait: %q", why)
	}
	// One that waits is served once bytes are given back.
	served := make(chan *ticket, 1)
	go func() {
		r, why := l.acquire(context.Background(), "next", 100, true)
		if why != "" {
			t.Error(why)
		}
		served <- r
	}()
	waitQueued(t, l, 1)
	releases[0].release()
	releases[0].release() // twice is once
	r := <-served
	r.release()
	for _, r := range releases[1:] {
		r.release()
	}
	assertIdle(t, l)
}

// One identity holds at most its share of a level: beyond, it waits while
// others still get in.
func TestLevelIdentityShare(t *testing.T) {
	l := newLevel(priorityCluster, 16, 1<<20)
	a1, _ := l.acquire(context.Background(), "a", 0, true)
	a2, _ := l.acquire(context.Background(), "a", 0, true)
	third := make(chan *ticket, 1)
	go func() {
		r, why := l.acquire(context.Background(), "a", 0, true)
		if why != "" {
			t.Error(why)
		}
		third <- r
	}()
	waitQueued(t, l, 1)
	b, why := l.acquire(context.Background(), "b", 0, true)
	if why != "" {
		t.Fatal(why)
	}
	select {
	case <-third:
		t.Fatal("an identity went past its share of 2 seats of 16")
	default:
	}
	a1.release()
	(<-third).release()
	a2.release()
	b.release()
	assertIdle(t, l)
}

// A full queue refuses at once, without waiting.
func TestLevelQueueFull(t *testing.T) {
	l := newLevel(priorityAnonymous, 1, 1<<20)
	hold, _ := l.acquire(context.Background(), "occupant", 0, true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	n := queueLength * handSize
	for i := range n {
		wg.Go(func() { _, _ = l.acquire(ctx, "flood", 0, true) })
		waitQueued(t, l, i+1)
	}
	start := time.Now()
	if _, why := l.acquire(context.Background(), "flood", 0, true); why != refusedQueueFull {
		t.Fatalf("a request beyond its hand's queues: %q", why)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the refusal took %s", d)
	}
	cancel()
	wg.Wait()
	hold.release()
	assertIdle(t, l)
}

func assertIdle(t *testing.T, l *level) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seatsInUse != 0 || l.bytesInUse != 0 || l.waiting != 0 || len(l.per) != 0 {
		t.Fatalf("left held: %d seats, %d bytes, %d waiting, %d identities", l.seatsInUse, l.bytesInUse, l.waiting, len(l.per))
	}
}

// A request grows its bytes (an answer it builds) within its share and its
// level's room; a known size over one identity's share is refused at once.
func TestLevelGrowAndTooLarge(t *testing.T) {
	l := newLevel(priorityAnonymous, 16, 400)
	if _, why := l.acquire(context.Background(), "a", 101, true); why != refusedTooLarge {
		t.Fatalf("a sized request over the share of 100: %q", why)
	}
	tk, why := l.acquire(context.Background(), "a", 1000, false) // unknown size: charged the share
	if why != "" || tk.n != 100 {
		t.Fatalf("an unsized request: %q, %d bytes", why, tk.n)
	}
	if tk.grow(1) {
		t.Fatal("grew past the identity's share")
	}
	tk.release()
	tk, _ = l.acquire(context.Background(), "a", 10, true)
	if !tk.grow(90) || tk.n != 100 {
		t.Fatalf("could not grow within the share: %d", tk.n)
	}
	tk.release()
	tk.release()
	if tk.grow(1) {
		t.Fatal("grew after its release")
	}
	assertIdle(t, l)
}
