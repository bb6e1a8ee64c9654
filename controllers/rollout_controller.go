package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/rollout"
)

// RolloutReconciler rolls each new latest release of a train with
// spec.rollout out in rings (internal/rollout decides): it counts each
// ring's clusters from their reports, opens the next ring when its gates
// pass, halts and resumes, and writes status.rollout. The ClusterReport
// controller turns each ring's opened version into its clusters'
// recommendations. Time-bound gates wake it on its clock at the moment they
// change.
type RolloutReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.WithDelayedExecution

	wakeups *wakeups
	reports index.Reports
}

// Reconcile evaluates one train's rollout and records it; a ring opens, and
// a halt begins or ends, only with a status write that took (under an
// optimistic lock), so racing managers announce each once.
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	train := &trainyardv1.ReleaseTrain{}
	if err := r.Get(ctx, req.NamespacedName, train); err != nil {
		r.wakeups.Cancel(req.NamespacedName)
		if apierrors.IsNotFound(err) {
			if component, trainName, ok := strings.Cut(req.Name, "."); ok {
				recordRollout(req.Namespace, component, trainName, nil)
			}
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if train.Spec.Rollout == nil {
		r.wakeups.Cancel(req.NamespacedName)
		recordRollout(train.Namespace, train.Spec.Component, train.Spec.Train, nil)
		if train.Status.Rollout == nil {
			return ctrl.Result{}, nil
		}
		return done(r.patch(ctx, train, nil))
	}
	in, err := r.inputs(ctx, train)
	if err != nil {
		return ctrl.Result{}, err
	}
	out := rollout.Evaluate(in)
	if !out.Next.IsZero() {
		r.wakeups.At(req.NamespacedName, out.Next)
	} else {
		r.wakeups.Cancel(req.NamespacedName)
	}
	if err := r.patch(ctx, train, &out.Status); errors.Is(err, errGone) {
		return ctrl.Result{}, nil
	} else if err != nil {
		return done(err)
	}
	recordRollout(train.Namespace, train.Spec.Component, train.Spec.Train, &out.Status)
	for _, ring := range out.Opened {
		r.Recorder.Eventf(train, nil, corev1.EventTypeNormal, "RingOpened", "OpenRing",
			"ring %s opened %s", ring, out.Status.Version)
	}
	if h := out.Halted; h != nil {
		r.Recorder.Eventf(train, nil, corev1.EventTypeWarning, "RolloutHalted", "HaltRollout",
			"rollout of %s halted: %s", h.Version, h.Message)
	}
	if h := out.Resumed; h != nil {
		r.Recorder.Eventf(train, nil, corev1.EventTypeNormal, "RolloutResumed", "ResumeRollout",
			"rollout of %s resumed (%s halt cleared)", h.Version, h.Reason)
	}
	return ctrl.Result{}, nil
}

// inputs gathers what the rollout is decided on: the train's latest, its
// followers' reports, its rings' approvals and its retracted versions.
func (r *RolloutReconciler) inputs(ctx context.Context, train *trainyardv1.ReleaseTrain) (rollout.Input, error) {
	in := rollout.Input{Train: train.Name, Policy: train.Spec.Rollout, Previous: train.Status.Rollout, Now: r.Clock.Now()}
	if l := train.Status.Latest; l != nil {
		in.Latest = l.Version
		if l.Since != nil {
			in.LatestSince = l.Since.Time
		}
	}
	// The cache's reports, read in place (index.Reports).
	err := r.reports.Each(ctx, train.Namespace, index.ReportTrain, train.Name, func(rep *trainyardv1.ClusterReport) {
		m := rollout.Member{ClusterID: rep.Spec.ClusterID, Labels: rep.Labels,
			Stale: conditions.IsTrue(rep.Status.Conditions, trainyardv1.ConditionStale), Ready: trainyardv1.ReadyUnknown}
		for _, c := range rep.Status.Components {
			if trainyardv1.TrainName(c.Name, rep.TrainOf(c.Name)) != train.Name {
				continue
			}
			m.Installed = c.Installed
			if since := c.SinceOr(rep.Status.FirstSeen); since != nil {
				m.Since = since.Time
			}
			if c.Ready != "" {
				m.Ready = c.Ready
			}
			if c.ReadySince != nil {
				m.ReadySince = c.ReadySince.Time
			}
		}
		in.Members = append(in.Members, m)
	})
	if err != nil {
		return in, err
	}
	var approvals trainyardv1.PromotionApprovalList
	if err := r.List(ctx, &approvals, client.InNamespace(train.Namespace)); err != nil {
		return in, err
	}
	for _, a := range approvals.Items {
		if a.Spec.Train == train.Name && a.Spec.Ring != "" {
			in.Approvals = append(in.Approvals, a)
		}
	}
	var rels trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &rels, client.InNamespace(train.Namespace), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReleaseTrain: train.Name}); err != nil {
		return in, err
	}
	retracted := map[string]bool{}
	for _, rel := range rels.Items {
		if rel.Spec.Retracted != nil {
			retracted[ordering.Canonical(rel.Spec.Version)] = true
		}
	}
	in.Retracted = func(v string) bool { return retracted[ordering.Canonical(v)] }
	return in, nil
}

// patch writes status.rollout, under an optimistic lock: a manager whose
// cache has not seen another's write (a ring opened) must not announce or
// overwrite it.
func (r *RolloutReconciler) patch(ctx context.Context, train *trainyardv1.ReleaseTrain, st *trainyardv1.RolloutStatus) error {
	if equality.Semantic.DeepEqual(train.Status.Rollout, st) {
		return nil
	}
	before := train.DeepCopy()
	train.Status.Rollout = st
	err := r.Status().Patch(ctx, train, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return errRetry
	}
	if apierrors.IsNotFound(err) {
		return errGone
	}
	return err
}

// SetupWithManager watches trains with a rollout, their followers' reports
// (what they run, how ready, their labels), their releases (a retraction)
// and approvals.
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.wakeups = newWakeups(r.Clock)
	r.reports = index.Reports{Cache: mgr.GetCache(), Reader: r.Client}
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		For(&trainyardv1.ReleaseTrain{}, builder.WithPredicates(
			predicate.NewPredicateFuncs(func(o client.Object) bool {
				t := o.(*trainyardv1.ReleaseTrain)
				return t.Spec.Rollout != nil || t.Status.Rollout != nil
			}),
			predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, latestChanged))).
		Watches(&trainyardv1.ClusterReport{}, handler.EnqueueRequestsFromMapFunc(r.trainsOfReport),
			builder.WithPredicates(rolloutInputChanged)).
		Watches(&trainyardv1.ComponentRelease{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				rel := o.(*trainyardv1.ComponentRelease)
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: rel.Namespace,
					Name: trainyardv1.TrainName(rel.Spec.Component, rel.Spec.Train)}}}
			}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.PromotionApproval{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				a := o.(*trainyardv1.PromotionApproval)
				if a.Spec.Ring == "" {
					return nil
				}
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.Train}}}
			})).
		WatchesRawSource(r.wakeups).
		Complete(r)
}

// trainsOfReport maps a report to the trains it follows that have a rollout.
func (r *RolloutReconciler) trainsOfReport(ctx context.Context, o client.Object) []reconcile.Request {
	rep := o.(*trainyardv1.ClusterReport)
	var out []reconcile.Request
	for _, c := range rep.Spec.Components {
		key := types.NamespacedName{Namespace: rep.Namespace, Name: trainyardv1.TrainName(c.Name, c.Train)}
		t := &trainyardv1.ReleaseTrain{}
		if err := r.Get(ctx, key, t, client.UnsafeDisableDeepCopy); err == nil && t.Spec.Rollout != nil {
			out = append(out, reconcile.Request{NamespacedName: key})
		}
	}
	return out
}

// rolloutInputChanged passes report changes that move a rollout: its
// labels (its ring), what its components run and how ready they are, and
// its staleness. A check-in that changes only lastSeen does not pass.
var rolloutInputChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
		if !sameUserLabels(o.Labels, n.Labels) ||
			conditions.IsTrue(o.Status.Conditions, trainyardv1.ConditionStale) != conditions.IsTrue(n.Status.Conditions, trainyardv1.ConditionStale) {
			return true
		}
		return !slices.EqualFunc(o.Status.Components, n.Status.Components, func(a, b trainyardv1.ComponentStatus) bool {
			return a.Name == b.Name && o.TrainOf(a.Name) == n.TrainOf(b.Name) && a.Installed == b.Installed && a.Ready == b.Ready &&
				timeEqual(a.SinceOr(o.Status.FirstSeen), b.SinceOr(n.Status.FirstSeen)) && timeEqual(a.ReadySince, b.ReadySince)
		})
	},
}

func timeEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// errGone: the train was deleted meanwhile; nothing to do or announce.
var errGone = errors.New("the train is gone")
