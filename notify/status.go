package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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

// +kubebuilder:rbac:groups=trainyard.dev,resources=notificationrules;notificationtargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=notificationrules/status;notificationtargets/status,verbs=get;patch

// Options configure notifications.
type Options struct {
	// Destinations: where deliveries may go (loopback, link-local and
	// metadata addresses are refused unless allowed).
	Destinations Destinations
}

// Setup adds the notifier and the controllers that persist its state to
// the targets' and rules' status. All of them run on the leader only.
func Setup(mgr ctrl.Manager, opts Options) error {
	n := newNotifier(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetCache(), ctrl.Log.WithName("notify"), opts.Destinations)
	if err := mgr.Add(n); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("notificationrule").
		For(&v1.NotificationRule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1.NotificationTarget{}, handler.EnqueueRequestsFromMapFunc(n.rulesOfTarget),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WatchesRawSource(n.ruleKicks).
		Complete(reconcile.Func(n.reconcileRule)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("notificationtarget").
		For(&v1.NotificationTarget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(n.targetKicks).
		Complete(reconcile.Func(n.reconcileTarget))
}

// rulesOfTarget maps a target's creation or deletion to the rules that
// name it.
func (n *Notifier) rulesOfTarget(ctx context.Context, o client.Object) []reconcile.Request {
	var rules v1.NotificationRuleList
	if err := n.client.List(ctx, &rules, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, r := range rules.Items {
		if r.Spec.TargetRef.Name == o.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&r)})
		}
	}
	return out
}

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

// conflictRetry is how soon a status write that lost a race is tried again.
const conflictRetry = 100 * time.Millisecond

// writeRule writes a rule's memory to its status, reading the rule and its
// target through r: the cache when reconciling, the API server when
// handing over. The patch is optimistic: a base the cache had not yet
// updated would otherwise leave stale fields (a delivered entry still
// queued) in place, and the next leader would send them again.
func (n *Notifier) writeRule(ctx context.Context, r client.Reader, key types.NamespacedName) error {
	var rule v1.NotificationRule
	if err := r.Get(ctx, key, &rule); err != nil {
		if apierrors.IsNotFound(err) {
			n.forgetRule(key)
		}
		return client.IgnoreNotFound(err)
	}
	tkey := types.NamespacedName{Namespace: rule.Namespace, Name: rule.Spec.TargetRef.Name}
	var target v1.NotificationTarget
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
		conditions.Set(&st.Conditions, gen, v1.ConditionReady, false, "DeliveryFailed", st.LastError.Message)
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
func failedLast(ok, failed *v1.DeliveryAttempt) bool {
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

// reconcileTarget checks that the Secret resolves and the receiver is
// reachable, and writes the delivery record.
func (n *Notifier) reconcileTarget(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var target v1.NotificationTarget
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
	for _, a := range []*v1.DeliveryAttempt{st.LastDelivery, st.LastError} {
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
		conditions.Set(&st.Conditions, gen, v1.ConditionReady, false, reason, probeErr.Error())
		st.LastError = &v1.DeliveryAttempt{Time: metav1.NewTime(probed), Message: probeErr.Error()}
		requeue = probeRetry
	case failedLast(st.LastDelivery, st.LastError):
		conditions.Set(&st.Conditions, gen, v1.ConditionReady, false, "DeliveryFailed", st.LastError.Message)
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
