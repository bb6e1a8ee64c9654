package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
)

// Reachability checks: how long one may take, and how often a target is
// checked again while it fails and while it works.
const (
	probeTimeout    = 5 * time.Second
	probeRetry      = 30 * time.Second
	probeRecheck    = 10 * time.Minute
	reasonConfigErr = "InvalidSecret"
)

// reconcileTarget checks that the Secret resolves and the receiver is
// reachable, and writes the delivery record.
func (n *Notifier) reconcileTarget(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var target trainyardv1.NotificationTarget
	if err := n.client.Get(ctx, req.NamespacedName, &target); err != nil {
		if apierrors.IsNotFound(err) {
			n.mu.Lock()
			delete(n.targets, req.NamespacedName)
			n.mu.Unlock()
			forgetTargetMetrics(req.Namespace, req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	rc, cfgErr := n.receiver(ctx, &target)
	if cfgErr != nil {
		if _, ok := cfgErr.(errConfig); !ok {
			return reconcile.Result{}, cfgErr // the API server failed us: retry
		}
	}
	now := time.Now()
	n.mu.Lock()
	ts := n.targetLocked(req.NamespacedName)
	due := ts.generation != target.Generation || ts.probed.IsZero() ||
		(ts.probeErr != nil && now.Sub(ts.probed) >= probeRetry) || now.Sub(ts.probed) >= probeRecheck
	n.mu.Unlock()
	if cfgErr == nil && due {
		var perr error
		if !proxied(rc) {
			perr = rc.probe(ctx, probeTimeout)
		}
		n.mu.Lock()
		ts.probed, ts.probeErr, ts.generation = now, perr, target.Generation
		n.mu.Unlock()
	}

	n.mu.Lock()
	st := target.Status.DeepCopy()
	st.ObservedGeneration = target.Generation
	st.Counts, st.LastDelivery, st.LastError = ts.counts, ts.lastDelivery.DeepCopy(), ts.lastError.DeepCopy()
	q := n.queuedForLocked(req.NamespacedName)
	st.Queued = int32(q)
	probed, probeErr := ts.probed, ts.probeErr
	n.mu.Unlock()
	queued.WithLabelValues(req.Namespace, req.Name).Set(float64(q))

	gen := target.Generation
	requeue := probeRecheck
	// The newest evidence decides: a delivery's outcome, or a later failed
	// reachability check. A check that succeeds says nothing about a
	// receiver that answers with errors.
	var lastOutcome time.Time
	for _, a := range []*trainyardv1.DeliveryAttempt{st.LastDelivery, st.LastError} {
		if a != nil && a.Time.After(lastOutcome) {
			lastOutcome = a.Time.Time
		}
	}
	unreachable := probeErr != nil && !probed.Truncate(time.Second).Before(lastOutcome)
	switch {
	case cfgErr != nil:
		conditions.MarkStalled(&st.Conditions, gen, reasonConfigErr, cfgErr.Error())
		requeue = probeRetry
	case unreachable:
		reason := "Unreachable"
		if errors.As(probeErr, new(errDestination)) {
			reason = "DestinationRefused"
		}
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, false, reason, probeErr.Error())
		st.LastError = &trainyardv1.DeliveryAttempt{Time: metav1.NewTime(probed), Message: probeErr.Error()}
		requeue = probeRetry
	case failedLast(st.LastDelivery, st.LastError):
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, false, "DeliveryFailed", st.LastError.Message)
		requeue = probeRetry
	case st.LastDelivery != nil:
		conditions.MarkReady(&st.Conditions, gen, "Delivered",
			fmt.Sprintf("the receiver accepted the last delivery (%d)", st.LastDelivery.StatusCode))
	default:
		conditions.MarkReady(&st.Conditions, gen, "Reachable", "the receiver accepts connections; nothing delivered yet")
	}
	if !equality.Semantic.DeepEqual(&target.Status, st) {
		patched := target.DeepCopy()
		patched.Status = *st
		if err := n.client.Status().Patch(ctx, patched,
			client.MergeFromWithOptions(&target, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{RequeueAfter: conflictRetry}, nil
			}
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// proxied tells whether deliveries go through an HTTP proxy, which a
// direct connection check would not test.
func proxied(rc *receiver) bool {
	u, err := http.ProxyFromEnvironment(&http.Request{URL: rc.url})
	return err == nil && u != nil
}
