package notify

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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
		For(&trainyardv1.NotificationRule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.NotificationTarget{}, handler.EnqueueRequestsFromMapFunc(n.rulesOfTarget),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WatchesRawSource(n.ruleKicks).
		Complete(reconcile.Func(n.reconcileRule)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("notificationtarget").
		For(&trainyardv1.NotificationTarget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(n.targetKicks).
		Complete(reconcile.Func(n.reconcileTarget))
}

// rulesOfTarget maps a target's creation or deletion to the rules that
// name it.
func (n *Notifier) rulesOfTarget(ctx context.Context, o client.Object) []reconcile.Request {
	var rules trainyardv1.NotificationRuleList
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

// conflictRetry is how soon a status write that lost a race is tried again.
const conflictRetry = 100 * time.Millisecond
