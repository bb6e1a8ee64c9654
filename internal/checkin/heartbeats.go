package checkin

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// heartbeats coalesces check-ins that change nothing: per cluster, the
// check-ins not yet written (how many, and the newest) are kept in memory
// and written at most once per granularity.
//
// A write adds the held count to the stored checkIns and moves lastSeen
// only forward, as an optimistic-locked status patch that is re-read and
// retried on a conflict. So with several replicas, each holding its own
// check-ins of one cluster, no increment is lost and lastSeen never goes
// back; and a failed write keeps what it held for the next one.
type heartbeats struct {
	s       *Store
	mu      sync.Mutex
	pending map[types.NamespacedName]*pendingBeat
	// last is the check-in record this replica last wrote per report, since
	// the cache may not have seen it yet. Entries older than two
	// granularities are forgotten: by then the cache has them.
	last map[types.NamespacedName]writtenBeat
	// due are the clusters whose held check-ins became due at a check-in,
	// for the writers of run: a check-in that changes nothing is answered
	// from memory and never waits on the API. Without run (a store that was
	// not started) they are written inline.
	due     map[types.NamespacedName]struct{}
	wake    chan struct{}
	running atomic.Bool
}

type pendingBeat struct {
	lastSeen time.Time
	count    int64
	// written is when the report's record was last written, as known when
	// the check-ins were held: the flush loop writes them once that is a
	// granularity ago, without reading the report.
	written time.Time
}

type writtenBeat struct {
	at       time.Time
	checkIns int64
}

func newHeartbeats(s *Store) *heartbeats {
	return &heartbeats{s: s, pending: map[types.NamespacedName]*pendingBeat{}, last: map[types.NamespacedName]writtenBeat{},
		due: map[types.NamespacedName]struct{}{}, wake: make(chan struct{}, 1)}
}

// record counts one check-in at `at`. When now is set, or the last write
// is older than the granularity, what is held is written: now inline, a due
// record by run's writers (inline when they do not run). A write that fails
// leaves the check-in held for the next flush: the report itself is stored,
// so the check-in is answered either way.
func (h *heartbeats) record(ctx context.Context, r *trainyardv1.ClusterReport, at time.Time, now bool) {
	key := keyOf(r)
	h.mu.Lock()
	h.hold(key, at, 1)
	written := h.lastWrite(key, r)
	if p := h.pending[key]; p.written.IsZero() || written.After(p.written) {
		p.written = written
	}
	due := now || at.Sub(written) >= h.s.opts.Heartbeat
	queued := due && !now && h.running.Load()
	if queued {
		h.due[key] = struct{}{}
	}
	h.mu.Unlock()
	if queued {
		select {
		case h.wake <- struct{}{}:
		default:
		}
		return
	}
	if !due {
		return
	}
	if err := h.write(ctx, r); err != nil {
		h.s.logOf(ctx).Error(err, "writing a check-in record; it is held for the next flush", "cluster", r.Name)
	}
}

// created counts a report's creation, at `at`, as its first check-in,
// written (by the controller, or by this replica's next write).
func (h *heartbeats) created(key types.NamespacedName, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last[key] = writtenBeat{at: at, checkIns: 1}
}

// hold adds n check-ins, the newest at `at`; the caller holds mu.
func (h *heartbeats) hold(key types.NamespacedName, at time.Time, n int64) {
	p := h.pending[key]
	if p == nil {
		p = &pendingBeat{}
		h.pending[key] = p
	}
	p.count += n
	if at.After(p.lastSeen) {
		p.lastSeen = at
	}
}

// lastWrite is when the report's check-in record was last written; the
// caller holds mu.
func (h *heartbeats) lastWrite(key types.NamespacedName, r *trainyardv1.ClusterReport) time.Time {
	var t time.Time
	if r.Status.LastSeen != nil {
		t = r.Status.LastSeen.Time
	}
	if w, ok := h.last[key]; ok && w.at.After(t) {
		t = w.at
	}
	return t
}

// write takes what is held for r's cluster and writes it; on failure it is
// held again, merged with what came meanwhile.
func (h *heartbeats) write(ctx context.Context, r *trainyardv1.ClusterReport) error {
	key := keyOf(r)
	h.mu.Lock()
	p := h.pending[key]
	delete(h.pending, key)
	stale := false
	if w, ok := h.last[key]; ok && w.checkIns > r.Status.CheckIns {
		stale = true // the cache has not seen this replica's last write
	}
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	err := h.patch(ctx, r, stale, p.lastSeen, p.count)
	if err != nil {
		h.mu.Lock()
		h.hold(key, p.lastSeen, p.count)
		h.mu.Unlock()
	}
	return err
}

// maxPatchAttempts bounds the retries of a check-in record that conflicts
// with other writers (another replica, the controller's status).
const maxPatchAttempts = 5

// patch adds n to the stored checkIns and moves lastSeen forward to at,
// patching against the stored resourceVersion. On a conflict (or when cur
// is known to be stale) it reads the report from the API and tries again.
func (h *heartbeats) patch(ctx context.Context, cur *trainyardv1.ClusterReport, stale bool, at time.Time, n int64) error {
	key := keyOf(cur)
	t := metav1.NewTime(at.UTC().Truncate(time.Second))
	for attempt := 1; ; attempt++ {
		if stale {
			fresh, err := h.s.reports.Get(ctx, key, true)
			if err != nil {
				return err
			}
			cur = fresh
		}
		patched := cur.DeepCopy()
		add := n
		if patched.Status.FirstSeen == nil {
			// The controller has not recorded the creation yet: this write
			// does, as the controller would (under the same optimistic lock).
			created := metav1.NewTime(cur.CreationTimestamp.UTC())
			patched.Status.FirstSeen = &created
			add++
			if patched.Status.LastSeen == nil {
				patched.Status.LastSeen = &created
			}
		}
		if patched.Status.LastSeen == nil || t.After(patched.Status.LastSeen.Time) {
			patched.Status.LastSeen = &t
		}
		patched.Status.CheckIns = cur.Status.CheckIns + add
		err := h.s.patch(ctx, cur, patched, true, true)
		if err == nil {
			h.mu.Lock()
			h.last[key] = writtenBeat{at: patched.Status.LastSeen.Time, checkIns: patched.Status.CheckIns}
			h.mu.Unlock()
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == maxPatchAttempts {
			return err
		}
		stale = true
	}
}

// seen adds what is held and what this replica wrote to a report's record.
func (h *heartbeats) seen(r *trainyardv1.ClusterReport, last time.Time) (time.Time, int64) {
	key := keyOf(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	checkIns := r.Status.CheckIns
	if w, ok := h.last[key]; ok {
		checkIns = max(checkIns, w.checkIns)
		if w.at.After(last) {
			last = w.at
		}
	}
	if p := h.pending[key]; p != nil {
		checkIns += p.count
		if p.lastSeen.After(last) {
			last = p.lastSeen
		}
	}
	return last, checkIns
}

// lastSeen is the newest check-in known for key that is not yet in the
// cache, or nil.
func (h *heartbeats) lastSeen(key types.NamespacedName) *time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var t *time.Time
	if w, ok := h.last[key]; ok {
		at := w.at
		t = &at
	}
	if p := h.pending[key]; p != nil && (t == nil || p.lastSeen.After(*t)) {
		at := p.lastSeen
		t = &at
	}
	return t
}

// run flushes the held check-ins every granularity, and writes those that
// check-ins found due, until ctx ends.
func (h *heartbeats) run(ctx context.Context) {
	h.running.Store(true)
	defer h.running.Store(false)
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.wake:
				h.mu.Lock()
				keys := make([]types.NamespacedName, 0, len(h.due))
				for k := range h.due {
					keys = append(keys, k)
				}
				clear(h.due)
				h.mu.Unlock()
				h.flushKeys(ctx, keys)
			}
		}
	}()
	t := h.s.opts.Clock.NewTicker(min(h.s.opts.Heartbeat, maxFlushTick))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			h.flushAll(ctx, false)
		}
	}
}

// maxFlushTick bounds how late a due record is written: a cluster that
// stopped checking in gets its last check-in written at most this long
// after its record became a granularity old.
const maxFlushTick = time.Minute

// flushAll writes the held check-ins, a few clusters at a time: those
// whose record was last written a granularity ago, or all of them.
func (h *heartbeats) flushAll(ctx context.Context, all bool) {
	now := h.s.opts.Clock.Now()
	h.mu.Lock()
	for k, w := range h.last {
		if now.Sub(w.at) > 2*h.s.opts.Heartbeat {
			delete(h.last, k)
		}
	}
	keys := make([]types.NamespacedName, 0, len(h.pending))
	for k, p := range h.pending {
		if all || now.Sub(p.written) >= h.s.opts.Heartbeat {
			keys = append(keys, k)
		}
	}
	h.mu.Unlock()
	h.flushKeys(ctx, keys)
}

// flushKeys writes the held check-ins of keys, a few clusters at a time.
func (h *heartbeats) flushKeys(ctx context.Context, keys []types.NamespacedName) {
	if len(keys) == 0 {
		return
	}
	work := make(chan types.NamespacedName)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range flushWorkers {
		wg.Go(func() {
			for key := range work {
				if err := h.flush(ctx, key); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		h.s.logOf(ctx).Info("some check-in records were not written; they are held for the next flush",
			"failed", n, "of", len(keys))
	}
}

// flushWorkers bounds the concurrent writes of a flush.
const flushWorkers = 8

// flush writes one cluster's held check-ins.
func (h *heartbeats) flush(ctx context.Context, key types.NamespacedName) error {
	defer h.s.locks.Lock(key.String())()
	r, err := h.s.reports.Get(ctx, key, false)
	if apierrors.IsNotFound(err) {
		// The cache can be behind a report created moments ago: only the
		// API server's word that it is gone drops what is held.
		r, err = h.s.reports.Get(ctx, key, true)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			h.mu.Lock()
			delete(h.pending, key)
			delete(h.last, key)
			h.mu.Unlock()
			return nil
		}
		return err
	}
	return h.write(ctx, r)
}

func keyOf(r *trainyardv1.ClusterReport) types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
}

// KeyedMutex serialises what is done under one key.
type KeyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// Lock locks key and returns its unlock. An unused key takes no memory.
func (k *KeyedMutex) Lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
