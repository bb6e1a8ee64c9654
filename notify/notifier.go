package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// maxRecent is how many accepted delivery ids a rule remembers.
const maxRecent = 32

// Notifier turns the transitions of reports, trains and releases into
// deliveries. It runs on the leader only (a manager Runnable that needs
// leader election), as do the status controllers that persist its state.
type Notifier struct {
	client client.Client // the manager's cached client
	reader client.Reader // uncached: Secrets are read when used, never cached
	cache  cache.Cache
	log    logr.Logger
	dest   Destinations // where deliveries may go

	mu                     sync.Mutex
	ctx                    context.Context // set by Start
	workers                sync.WaitGroup  // the target workers, which Start waits for before it hands over
	rules                  map[types.NamespacedName]*ruleState
	targets                map[types.NamespacedName]*targetState
	running                map[types.NamespacedName]chan struct{} // target workers, with their wake-up
	ruleKicks, targetKicks *kicks
}

// ruleState is a rule's memory: what its status persists, and its digest
// window.
type ruleState struct {
	key            types.NamespacedName
	uid            types.UID
	spec           trainyardv1.NotificationRuleSpec
	counts         trainyardv1.DeliveryCounts
	lastDelivery   *trainyardv1.DeliveryAttempt
	lastError      *trainyardv1.DeliveryAttempt
	handledThrough time.Time
	// handledAt: the ids of the transitions of handledThrough's second that
	// were admitted; nil when unknown (too many, or an older status): then
	// that whole second counts as handled.
	handledAt []string
	recent    []string
	queue     []*entry

	windowEnd time.Time // zero: quiet, the next event is sent at once
	buffer    map[trainyardv1.EventType]*batch
	oldest    time.Time // the oldest buffered event's time
	timer     *time.Timer
}

type entry struct {
	trainyardv1.QueuedDelivery
	next time.Time // precise; NextAttempt persists it
}

type targetState struct {
	counts       trainyardv1.DeliveryCounts
	lastDelivery *trainyardv1.DeliveryAttempt
	lastError    *trainyardv1.DeliveryAttempt
	// probed: the last reachability check (zero: none yet) and its result.
	probed     time.Time
	probeErr   error
	generation int64
}

func newNotifier(c client.Client, reader client.Reader, ca cache.Cache, log logr.Logger, dest Destinations) *Notifier {
	return &Notifier{
		client: c, reader: reader, cache: ca, log: log, dest: dest,
		rules: map[types.NamespacedName]*ruleState{}, targets: map[types.NamespacedName]*targetState{},
		running: map[types.NamespacedName]chan struct{}{}, ruleKicks: &kicks{}, targetKicks: &kicks{},
	}
}

// NeedLeaderElection: only the leader sends.
func (n *Notifier) NeedLeaderElection() bool { return true }

// Start watches the objects whose transitions are events. Registering the
// handlers replays every existing object as an addition: its facts newer
// than a rule's handledThrough are sent (what a previous leader had not
// handled), older ones are the baseline.
func (n *Notifier) Start(ctx context.Context) error {
	// The previous leader wrote every rule's state before it let go of the
	// lease (handOver). Read it from the API server: this replica's cache
	// may not have seen that last write yet, and a queue entry it still
	// showed would be sent again.
	var rules trainyardv1.NotificationRuleList
	if err := n.reader.List(ctx, &rules); err != nil {
		return fmt.Errorf("reading the notification rules' state: %w", err)
	}
	var targets trainyardv1.NotificationTargetList
	if err := n.reader.List(ctx, &targets); err != nil {
		return fmt.Errorf("reading the notification targets' state: %w", err)
	}
	n.mu.Lock()
	n.ctx = ctx
	for i := range rules.Items {
		n.loadLocked(&rules.Items[i])
	}
	for i := range targets.Items {
		t := &targets.Items[i]
		// The counts go on from what earlier leaders counted; a failed
		// reachability check (no delivery id) is checked again instead.
		ts := &targetState{counts: t.Status.Counts, lastDelivery: t.Status.LastDelivery}
		if t.Status.LastError != nil && t.Status.LastError.ID != "" {
			ts.lastError = t.Status.LastError
		}
		n.targets[client.ObjectKeyFromObject(t)] = ts
	}
	for key, rs := range n.rules {
		if len(rs.queue) > 0 {
			n.kickTargetLocked(types.NamespacedName{Namespace: key.Namespace, Name: rs.spec.TargetRef.Name})
		}
	}
	n.mu.Unlock()
	// facts are an object's events; complete adds to its new ones what
	// costs a lookup (only transitions pay for it).
	watch := []struct {
		obj      client.Object
		facts    func(client.Object) []Event
		complete func(client.Object, []Event) []Event
	}{
		{&trainyardv1.ClusterReport{}, func(o client.Object) []Event { return ClusterEvents(o.(*trainyardv1.ClusterReport)) }, nil},
		{&trainyardv1.ReleaseTrain{}, func(o client.Object) []Event { return TrainEvents(o.(*trainyardv1.ReleaseTrain)) },
			func(o client.Object, evs []Event) []Event {
				return n.withLatestLabels(ctx, o.(*trainyardv1.ReleaseTrain), evs)
			}},
		{&trainyardv1.Advisory{}, func(o client.Object) []Event { return AdvisoryEvents(o.(*trainyardv1.Advisory)) }, nil},
		{&trainyardv1.ComponentRelease{}, func(o client.Object) []Event { return ReleaseEvents(o.(*trainyardv1.ComponentRelease), 0) },
			func(o client.Object, evs []Event) []Event {
				return n.withRunning(ctx, o.(*trainyardv1.ComponentRelease), evs)
			}},
	}
	for _, w := range watch {
		inf, err := n.cache.GetInformer(ctx, w.obj)
		if err != nil {
			return err
		}
		facts, complete := w.facts, w.complete
		offer := func(obj client.Object, evs []Event, initial bool) {
			if len(evs) > 0 && complete != nil {
				evs = complete(obj, evs)
			}
			n.offer(obj.GetNamespace(), evs, initial)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				if obj, ok := o.(client.Object); ok {
					offer(obj, facts(obj), true)
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(client.Object)
				nw, ok2 := newObj.(client.Object)
				if ok1 && ok2 {
					offer(nw, newFacts(facts(o), facts(nw)), false)
				}
			},
		}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	n.mu.Lock()
	for _, rs := range n.rules {
		if rs.timer != nil {
			rs.timer.Stop()
		}
	}
	n.mu.Unlock()
	// No new worker starts now (kickTargetLocked sees ctx done). An attempt
	// under way finishes, bounded by its target's timeout, and is recorded:
	// a delivery the receiver accepted is never forgotten by stopping.
	n.workers.Wait()
	n.handOver()
	return nil
}

// handOverTimeout bounds the final status writes of a stopping leader; the
// manager releases its lease only after Start returns.
const handOverTimeout = 10 * time.Second

// handOver writes every rule's state (queue, recent ids, handledThrough)
// from memory to its status, against the API server, before the lease is
// released: the next leader starts from exactly what this one delivered.
func (n *Notifier) handOver() {
	ctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	n.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(n.rules))
	for key := range n.rules {
		keys = append(keys, key)
	}
	n.mu.Unlock()
	for _, key := range keys {
		err := retry.OnError(retry.DefaultRetry, func(err error) bool {
			return apierrors.IsConflict(err) || ctx.Err() == nil
		}, func() error {
			return n.writeRule(ctx, n.reader, key)
		})
		if err != nil {
			n.log.Error(err, "writing a notification rule's state before handing over; "+
				"the next leader may send its last deliveries again (with the same ids)", "rule", key)
		}
	}
	n.mu.Lock()
	targets := make([]types.NamespacedName, 0, len(n.targets))
	for key := range n.targets {
		targets = append(targets, key)
	}
	n.mu.Unlock()
	for _, key := range targets {
		if err := retry.OnError(retry.DefaultRetry, func(error) bool { return ctx.Err() == nil }, func() error {
			return n.writeTargetRecord(ctx, key)
		}); err != nil {
			n.log.Error(err, "writing a notification target's counts before handing over", "target", key)
		}
	}
}

// writeTargetRecord writes a target's delivery record (counts, last
// delivery and error, queue length) from memory, as read from the API
// server; its conditions are the next leader's reconcile's.
func (n *Notifier) writeTargetRecord(ctx context.Context, key types.NamespacedName) error {
	var t trainyardv1.NotificationTarget
	if err := n.reader.Get(ctx, key, &t); err != nil {
		return client.IgnoreNotFound(err)
	}
	n.mu.Lock()
	ts := n.targets[key]
	if ts == nil {
		n.mu.Unlock()
		return nil
	}
	st := t.Status.DeepCopy()
	st.Counts, st.LastDelivery, st.LastError = ts.counts, ts.lastDelivery.DeepCopy(), ts.lastError.DeepCopy()
	st.Queued = int32(n.queuedForLocked(key))
	n.mu.Unlock()
	if equality.Semantic.DeepEqual(&t.Status, st) {
		return nil
	}
	patched := t.DeepCopy()
	patched.Status = *st
	return client.IgnoreNotFound(n.client.Status().Patch(ctx, patched,
		client.MergeFromWithOptions(&t, client.MergeFromWithOptimisticLock{})))
}

// withLatestLabels gives a train's events the latest release's labels,
// for releaseSelector.
func (n *Notifier) withLatestLabels(ctx context.Context, t *trainyardv1.ReleaseTrain, evs []Event) []Event {
	var rel trainyardv1.ComponentRelease
	if t.Status.Latest != nil &&
		n.client.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: t.Status.Latest.Name}, &rel) == nil {
		for i := range evs {
			evs[i].labels = rel.Labels
		}
	}
	return evs
}

// withRunning counts the clusters that run a retracted release.
func (n *Notifier) withRunning(ctx context.Context, r *trainyardv1.ComponentRelease, evs []Event) []Event {
	running := 0
	var reports trainyardv1.ClusterReportList
	train := trainyardv1.TrainName(r.Spec.Component, r.Spec.Train)
	if err := n.client.List(ctx, &reports, client.InNamespace(r.Namespace), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReportTrain: train}); err == nil {
		version := ordering.Canonical(r.Spec.Version)
		for _, rep := range reports.Items {
			if slices.ContainsFunc(rep.Spec.Components, func(c trainyardv1.ReportedComponent) bool {
				return c.Name == r.Spec.Component && trainyardv1.TrainName(c.Name, c.Train) == train &&
					ordering.Canonical(c.Version) == version
			}) {
				running++
			}
		}
	}
	// The same facts, with the count: only those that were new.
	return slices.DeleteFunc(ReleaseEvents(r, running), func(e Event) bool {
		return !slices.ContainsFunc(evs, func(x Event) bool { return x.ID == e.ID })
	})
}

// offer routes new facts to the rules of their namespace. initial facts
// come from an object seen for the first time (this process's start, or a
// new object): only those newer than a rule's handledThrough are new.
func (n *Notifier) offer(ns string, facts []Event, initial bool) {
	if len(facts) == 0 {
		return
	}
	var rules trainyardv1.NotificationRuleList
	if err := n.client.List(context.Background(), &rules, client.InNamespace(ns)); err != nil {
		n.log.Error(err, "listing notification rules", "namespace", ns)
		return
	}
	if len(rules.Items) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	for i := range rules.Items {
		rs := n.ruleLocked(&rules.Items[i])
		for _, e := range facts {
			if !Matches(&rs.spec, &e) || (initial && rs.handled(e)) || rs.knows(e.ID) {
				continue
			}
			n.admitLocked(rs, e, now)
		}
	}
}

// handled tells whether a transition seen when this process starts was
// handled already: stamped before handledThrough, or in its very second
// and admitted then. Times have a second's precision: a transition of the
// same second as the last one handled (two releases published within a
// second of a leader change) is new, not old.
func (rs *ruleState) handled(e Event) bool {
	switch {
	case e.Time.Before(rs.handledThrough):
		return true
	case e.Time.After(rs.handledThrough):
		return false
	}
	return rs.handledAt == nil || slices.Contains(rs.handledAt, e.ID)
}

// maxHandledAt bounds handledAt, as the status's schema does.
const maxHandledAt = 64

// markHandledLocked moves handledThrough forward to through (if later) and
// remembers which of b's transitions share its second.
func (rs *ruleState) markHandledLocked(b *batch, through time.Time) {
	through = through.Truncate(time.Second)
	if through.After(rs.handledThrough) {
		rs.handledThrough, rs.handledAt = through, []string{}
	}
	if rs.handledAt == nil {
		return
	}
	if b.count > len(b.first) && !b.newest.Before(rs.handledThrough) {
		rs.handledAt = nil // members not kept may share the second
		return
	}
	for _, m := range b.first {
		if m.Time.Equal(rs.handledThrough) && !slices.Contains(rs.handledAt, m.ID) {
			if len(rs.handledAt) == maxHandledAt {
				rs.handledAt = nil
				return
			}
			rs.handledAt = append(rs.handledAt, m.ID)
		}
	}
}

// knows tells whether an event is queued or was just delivered.
func (rs *ruleState) knows(id string) bool {
	return slices.Contains(rs.recent, id) || slices.ContainsFunc(rs.queue, func(e *entry) bool { return e.ID == id })
}

// admitLocked sends the first event after a quiet spell at once and opens
// a digest window; events within the window wait for its end.
func (n *Notifier) admitLocked(rs *ruleState, e Event, now time.Time) {
	if rs.windowEnd.IsZero() {
		b := newBatch(e.Type)
		b.add(e)
		n.enqueueLocked(rs, b, now)
		n.openWindowLocked(rs, now)
		return
	}
	if rs.buffer == nil {
		rs.buffer = map[trainyardv1.EventType]*batch{}
	}
	b := rs.buffer[e.Type]
	if b == nil {
		b = newBatch(e.Type)
		rs.buffer[e.Type] = b
	}
	b.add(e)
	if rs.oldest.IsZero() || e.Time.Before(rs.oldest) {
		rs.oldest = e.Time
	}
}

func (n *Notifier) openWindowLocked(rs *ruleState, now time.Time) {
	w := digestWindow(&rs.spec)
	rs.windowEnd = now.Add(w)
	key, uid := rs.key, rs.uid
	rs.timer = time.AfterFunc(w, func() { n.flush(key, uid) })
}

func digestWindow(spec *trainyardv1.NotificationRuleSpec) time.Duration {
	if spec.DigestWindow != nil && spec.DigestWindow.Duration > 0 {
		return spec.DigestWindow.Duration
	}
	d, _ := time.ParseDuration(trainyardv1.DefaultDigestWindow)
	return d
}

// flush ends a digest window: one delivery per event type buffered, and a
// new window if there were any (a storm goes on being coalesced).
func (n *Notifier) flush(key types.NamespacedName, uid types.UID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := n.rules[key]
	if rs == nil || rs.uid != uid {
		return
	}
	rs.windowEnd, rs.timer = time.Time{}, nil
	if len(rs.buffer) == 0 {
		return
	}
	now := time.Now()
	buf := rs.buffer
	rs.buffer, rs.oldest = nil, time.Time{}
	for _, t := range trainyardv1.EventTypes {
		if b := buf[t]; b != nil {
			n.enqueueLocked(rs, b, now)
		}
	}
	if n.ctx != nil && n.ctx.Err() == nil {
		n.openWindowLocked(rs, now)
	}
}

// enqueueLocked queues a delivery, unless the target's queue is full.
func (n *Notifier) enqueueLocked(rs *ruleState, b *batch, now time.Time) {
	tkey := types.NamespacedName{Namespace: rs.key.Namespace, Name: rs.spec.TargetRef.Name}
	ts := n.targetLocked(tkey)
	defer n.ruleKicks.kick(rs.key)
	defer n.targetKicks.kick(tkey)
	// Everything up to the newest event is now queued (or dropped, below);
	// events still buffered are not.
	through := b.newest
	if !rs.oldest.IsZero() && !rs.oldest.After(through) {
		through = rs.oldest.Add(-time.Second)
	}
	rs.markHandledLocked(b, through)
	if n.queuedForLocked(tkey) >= queueLimit(n.targetSpec(tkey)) {
		rs.counts.Dropped++
		ts.counts.Dropped++
		deliveries.WithLabelValues(tkey.Namespace, tkey.Name, "dropped").Inc()
		n.log.Info("notification queue full: delivery dropped", "rule", rs.key, "target", tkey, "type", b.typ, "count", b.count)
		return
	}
	ce := b.cloudEvent(rs.key.Namespace, rs.key.Name)
	raw, err := json.Marshal(ce)
	if err != nil { // cannot happen: plain strings and numbers
		n.log.Error(err, "encoding a notification")
		return
	}
	rs.queue = append(rs.queue, &entry{QueuedDelivery: trainyardv1.QueuedDelivery{
		ID: ce.ID, Type: ce.Type, Count: int32(b.count), Queued: metav1.NewTime(now), Event: string(raw),
	}, next: now})
	if b.count > 1 {
		rs.counts.Suppressed += int64(b.count - 1)
		ts.counts.Suppressed += int64(b.count - 1)
		suppressed.WithLabelValues(rs.key.Namespace, rs.key.Name).Add(float64(b.count - 1))
	}
	n.kickTargetLocked(tkey)
}

func (n *Notifier) targetSpec(key types.NamespacedName) *trainyardv1.NotificationTargetSpec {
	var t trainyardv1.NotificationTarget
	if err := n.client.Get(context.Background(), key, &t); err != nil {
		return nil
	}
	return &t.Spec
}

func queueLimit(spec *trainyardv1.NotificationTargetSpec) int {
	if spec == nil || spec.QueueLimit <= 0 {
		return trainyardv1.DefaultQueueLimit
	}
	return int(spec.QueueLimit)
}

// queuedForLocked counts the deliveries waiting for a target, over its rules.
func (n *Notifier) queuedForLocked(tkey types.NamespacedName) int {
	q := 0
	for key, rs := range n.rules {
		if key.Namespace == tkey.Namespace && rs.spec.TargetRef.Name == tkey.Name {
			q += len(rs.queue)
		}
	}
	return q
}

// ruleLocked returns a rule's memory, loading it from its status the first
// time (or when the rule was re-created), and takes its current spec.
func (n *Notifier) ruleLocked(r *trainyardv1.NotificationRule) *ruleState {
	key := client.ObjectKeyFromObject(r)
	rs := n.rules[key]
	if rs == nil || rs.uid != r.UID {
		rs = n.loadLocked(r)
		if len(rs.queue) > 0 {
			n.kickTargetLocked(types.NamespacedName{Namespace: key.Namespace, Name: r.Spec.TargetRef.Name})
		}
	}
	rs.spec = *r.Spec.DeepCopy()
	return rs
}

// loadLocked replaces a rule's memory with what its status holds.
func (n *Notifier) loadLocked(r *trainyardv1.NotificationRule) *ruleState {
	key := client.ObjectKeyFromObject(r)
	if old := n.rules[key]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	rs := loadRule(r)
	rs.spec = *r.Spec.DeepCopy()
	n.rules[key] = rs
	return rs
}

func loadRule(r *trainyardv1.NotificationRule) *ruleState {
	st := r.Status.DeepCopy()
	rs := &ruleState{
		key: client.ObjectKeyFromObject(r), uid: r.UID, counts: st.Counts,
		lastDelivery: st.LastDelivery, lastError: st.LastError, recent: st.RecentIDs,
		// A new rule sends the transitions after its creation only.
		handledThrough: r.CreationTimestamp.Time,
	}
	if st.HandledThrough != nil {
		rs.handledThrough = st.HandledThrough.Time
		if len(st.HandledAt) > 0 {
			rs.handledAt = slices.Clone(st.HandledAt)
		}
	}
	for _, q := range st.Queue {
		e := &entry{QueuedDelivery: q, next: q.Queued.Time}
		if q.NextAttempt != nil {
			e.next = q.NextAttempt.Time
		}
		rs.queue = append(rs.queue, e)
	}
	return rs
}

func (n *Notifier) targetLocked(key types.NamespacedName) *targetState {
	ts := n.targets[key]
	if ts == nil {
		ts = &targetState{}
		n.targets[key] = ts
	}
	return ts
}

// kicks is a controller source that reconciles an object when the notifier
// changed what its status shows; the queue coalesces a storm of changes into
// few writes.
type kicks struct {
	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
	pending []types.NamespacedName
}

func (k *kicks) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.queue = q
	for _, key := range k.pending {
		q.Add(reconcile.Request{NamespacedName: key})
	}
	k.pending = nil
	return nil
}

func (k *kicks) String() string { return "notifier" }

func (k *kicks) kick(key types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.queue == nil {
		if len(k.pending) < 1024 {
			k.pending = append(k.pending, key)
		}
		return
	}
	k.queue.Add(reconcile.Request{NamespacedName: key})
}
