package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// reportToTrains enqueues the train of every component a report runs, before
// and after an update, so that a train a cluster stopped following is
// recounted too. It enqueues after delay: counting walks every follower of a
// train, so a burst of check-ins is counted once, not once per check-in.
type reportToTrains struct{ delay time.Duration }

func (h reportToTrains) enqueue(q queue, objs ...client.Object) {
	for _, o := range objs {
		r, ok := o.(*v1.ClusterReport)
		if !ok {
			continue
		}
		for _, c := range r.Spec.Components {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{
				Namespace: r.Namespace, Name: v1.TrainName(c.Name, c.Train)}}, h.delay)
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
