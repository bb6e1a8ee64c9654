package notify

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
)

// A rule's status: the notifier's memory of it (queue, handledThrough,
// deliveries), written so that a new leader resumes where the old one was.

// reconcileRule writes a rule's memory to its status: the queue and
// handledThrough first of all, which a restart resumes from.
func (n *Notifier) reconcileRule(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	err := n.writeRule(ctx, n.client, req.NamespacedName)
	if apierrors.IsConflict(err) {
		// The cache is a write behind: read again once it has caught up.
		return reconcile.Result{RequeueAfter: conflictRetry}, nil
	}
	return reconcile.Result{}, err
}

// writeRule writes a rule's memory to its status, reading the rule and its
// target through r: the cache when reconciling, the API server when
// handing over. The patch is optimistic: a base the cache had not yet
// updated would otherwise leave stale fields (a delivered entry still
// queued) in place, and the next leader would send them again.
func (n *Notifier) writeRule(ctx context.Context, r client.Reader, key types.NamespacedName) error {
	var rule trainyardv1.NotificationRule
	if err := r.Get(ctx, key, &rule); err != nil {
		if apierrors.IsNotFound(err) {
			n.forgetRule(key)
		}
		return client.IgnoreNotFound(err)
	}
	tkey := types.NamespacedName{Namespace: rule.Namespace, Name: rule.Spec.TargetRef.Name}
	var target trainyardv1.NotificationTarget
	terr := r.Get(ctx, tkey, &target)
	if terr != nil && !apierrors.IsNotFound(terr) {
		return terr
	}

	n.mu.Lock()
	rs := n.ruleLocked(&rule)
	st := rule.Status.DeepCopy()
	st.ObservedGeneration = rule.Generation
	st.Counts, st.LastDelivery, st.LastError = rs.counts, rs.lastDelivery.DeepCopy(), rs.lastError.DeepCopy()
	if !rs.handledThrough.IsZero() {
		t := metav1.NewTime(rs.handledThrough)
		st.HandledThrough = &t
	}
	st.HandledAt = slices.Clone(rs.handledAt)
	st.RecentIDs = slices.Clone(rs.recent)
	st.Queue = nil
	for _, e := range rs.queue {
		st.Queue = append(st.Queue, *e.QueuedDelivery.DeepCopy())
	}
	queuedLen := len(rs.queue)
	n.mu.Unlock()

	gen := rule.Generation
	switch {
	case apierrors.IsNotFound(terr):
		conditions.MarkStalled(&st.Conditions, gen, "TargetNotFound",
			fmt.Sprintf("NotificationTarget %s does not exist; events are queued for it", tkey.Name))
	case rule.Spec.Suspend:
		conditions.MarkReady(&st.Conditions, gen, "Suspended", "the rule is suspended: nothing is sent")
	case failedLast(st.LastDelivery, st.LastError):
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, false, "DeliveryFailed", st.LastError.Message)
	default:
		msg := fmt.Sprintf("sending to %s", tkey.Name)
		if queuedLen > 0 {
			msg += fmt.Sprintf("; %d deliveries queued", queuedLen)
		}
		conditions.MarkReady(&st.Conditions, gen, "Ready", msg)
	}
	if equality.Semantic.DeepEqual(&rule.Status, st) {
		return nil
	}
	patched := rule.DeepCopy()
	patched.Status = *st
	return client.IgnoreNotFound(n.client.Status().Patch(ctx, patched,
		client.MergeFromWithOptions(&rule, client.MergeFromWithOptimisticLock{})))
}

// failedLast tells whether the last attempt failed.
func failedLast(ok, failed *trainyardv1.DeliveryAttempt) bool {
	return failed != nil && (ok == nil || failed.Time.After(ok.Time.Time) ||
		(failed.Time.Equal(&ok.Time) && failed.ID != ok.ID))
}

func (n *Notifier) forgetRule(key types.NamespacedName) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if rs := n.rules[key]; rs != nil && rs.timer != nil {
		rs.timer.Stop()
	}
	delete(n.rules, key)
	suppressed.DeleteLabelValues(key.Namespace, key.Name)
}
