package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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
