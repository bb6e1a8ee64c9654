package controllers

import (
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/rollout"
)

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// reportToTrains enqueues the train of every component a report runs, before
// and after an update, so that a train a cluster stopped following is
// recounted too. It enqueues after a delay: counting walks every follower of
// a train, so a burst of check-ins is counted once, not once per check-in.
type reportToTrains struct{ delays *adoptionDelays }

// adoptionDelays is how long a train's recount waits: at least the
// configured delay, or recountCost times what its last recount took, so that
// the recounts of a train with 100,000 followers take a bounded share of the
// manager's CPU (1/recountCost: 1 %) while a fleet onboards, instead of one recount
// per second whatever it costs.
type adoptionDelays struct {
	min  time.Duration
	mu   sync.Mutex
	took map[types.NamespacedName]time.Duration // per existing train
}

const recountCost = 100

func (d *adoptionDelays) of(train types.NamespacedName) time.Duration {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(d.min, recountCost*d.took[train])
}

// counted records how long train's recount took; forget drops the train.
func (d *adoptionDelays) counted(train types.NamespacedName, took time.Duration) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.took == nil {
		d.took = map[types.NamespacedName]time.Duration{}
	}
	d.took[train] = took
}

func (d *adoptionDelays) forget(train types.NamespacedName) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.took, train)
}

func (h reportToTrains) enqueue(q queue, objs ...client.Object) {
	for _, o := range objs {
		r, ok := o.(*trainyardv1.ClusterReport)
		if !ok {
			continue
		}
		for _, c := range r.Spec.Components {
			key := types.NamespacedName{Namespace: r.Namespace, Name: trainyardv1.TrainName(c.Name, c.Train)}
			q.AddAfter(reconcile.Request{NamespacedName: key}, h.delays.of(key))
		}
	}
}

func (h reportToTrains) Create(_ context.Context, e event.CreateEvent, q queue) {
	h.enqueue(q, e.Object)
}

func (h reportToTrains) Update(_ context.Context, e event.UpdateEvent, q queue) {
	h.enqueue(q, e.ObjectOld, e.ObjectNew)
}

func (h reportToTrains) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	h.enqueue(q, e.Object)
}

func (h reportToTrains) Generic(_ context.Context, e event.GenericEvent, q queue) {
	h.enqueue(q, e.Object)
}

// trainToReports enqueues the reports a train change can move: every
// follower when what is latest, the policy or the rollout's version, phase
// or halts change; only the members of the rings whose hold changed when a
// ring opens, soaks or shows another slice. A ring's counts moving (each
// cluster that upgrades) enqueues nobody: at 10,000 followers, reconciling
// the fleet once per upgrade would cost more than the upgrades.
type trainToReports struct{ r *ClusterReportReconciler }

func (h trainToReports) Create(ctx context.Context, e event.CreateEvent, q queue) {
	h.add(q, h.r.reportsMatching(ctx, e.Object.GetNamespace(), e.Object.GetName(), nil))
}

func (h trainToReports) Delete(ctx context.Context, e event.DeleteEvent, q queue) {
	h.add(q, h.r.reportsMatching(ctx, e.Object.GetNamespace(), e.Object.GetName(), nil))
}

func (h trainToReports) Generic(ctx context.Context, e event.GenericEvent, q queue) {
	h.add(q, h.r.reportsMatching(ctx, e.Object.GetNamespace(), e.Object.GetName(), nil))
}

func (h trainToReports) Update(ctx context.Context, e event.UpdateEvent, q queue) {
	o, n := e.ObjectOld.(*trainyardv1.ReleaseTrain), e.ObjectNew.(*trainyardv1.ReleaseTrain)
	var keep func(*trainyardv1.ClusterReport) bool
	switch {
	case o.Generation == n.Generation && !equality.Semantic.DeepEqual(o.Status.Latest, n.Status.Latest) && rolloutFollows(n):
		// The rollout's status write for the new latest follows and
		// enqueues every follower: reconciling them now would write each
		// report twice. Should that write not come, they are reconciled
		// later anyway (the queue keeps one request per report).
		for _, req := range h.r.reportsMatching(ctx, n.Namespace, n.Name, nil) {
			q.AddAfter(req, rolloutGrace)
		}
		return
	case o.Generation != n.Generation || !equality.Semantic.DeepEqual(o.Status.Latest, n.Status.Latest):
	case n.Spec.Rollout == nil || o.Status.Rollout == nil || n.Status.Rollout == nil:
		if equality.Semantic.DeepEqual(o.Status.Rollout, n.Status.Rollout) {
			return
		}
	default:
		ro, rn := o.Status.Rollout, n.Status.Rollout
		if ro.Version != rn.Version || ro.Phase != rn.Phase || !equality.Semantic.DeepEqual(ro.Halts, rn.Halts) {
			break
		}
		changed := map[string]bool{}
		for _, ring := range rn.Rings {
			i := slices.IndexFunc(ro.Rings, func(x trainyardv1.RingStatus) bool { return x.Name == ring.Name })
			if i < 0 || !rollout.SameHold(ro.Rings[i], ring) {
				changed[ring.Name] = true
			}
		}
		if len(changed) == 0 {
			return
		}
		rings := n.Spec.Rollout.Rings
		keep = func(rep *trainyardv1.ClusterReport) bool {
			return changed[rings[rollout.RingOf(rings, rep.Labels)].Name]
		}
	}
	h.add(q, h.r.reportsMatching(ctx, n.Namespace, n.Name, keep))
}

func (h trainToReports) add(q queue, reqs []reconcile.Request) {
	for _, req := range reqs {
		q.Add(req)
	}
}

// rolloutGrace is how long a train's followers wait for its rollout to
// start a new latest before they are reconciled without it.
const rolloutGrace = 30 * time.Second

// rolloutFollows tells whether a train's rollout has yet to start its
// latest release (its status will change).
func rolloutFollows(t *trainyardv1.ReleaseTrain) bool {
	return t.Spec.Rollout != nil && t.Status.Rollout != nil && t.Status.Latest != nil &&
		rollout.Newer(t.Status.Latest.Version, t.Status.Rollout.Version)
}
