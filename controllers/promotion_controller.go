package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
	"github.com/trainyard-dev/trainyard/internal/promotion"
)

// maxBlocked is how many candidates blocked for good a train remembers.
const maxBlocked = 10

// PromotionReconciler promotes the source train's latest release to a
// train with spec.promotion once every gate passes, and shows each gate in
// the train's status.promotion. Time-bound gates (soak, window, an
// approval's expiry) wake it on its clock at the moment they change.
type PromotionReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.WithDelayedExecution

	wakeups *wakeups
	reports index.Reports
}

// +kubebuilder:rbac:groups=trainyard.dev,resources=promotionapprovals,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=componentreleases,verbs=create

// Reconcile evaluates one train's promotion: the source train's latest
// release is the candidate (sourceLatest), its gates are evaluated and,
// when all pass, it is promoted (evaluate, decide); the candidate and the
// ones blocked for good are written to the status, and the next moment a
// gate can change is scheduled.
func (r *PromotionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	train := &trainyardv1.ReleaseTrain{}
	if err := r.Get(ctx, req.NamespacedName, train); err != nil {
		r.wakeups.Cancel(req.NamespacedName)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if train.Spec.Promotion == nil {
		r.wakeups.Cancel(req.NamespacedName)
		if train.Status.Promotion == nil {
			return ctrl.Result{}, nil
		}
		return done(r.patch(ctx, train, nil))
	}
	var before []trainyardv1.PromotionCandidate
	if train.Status.Promotion != nil {
		before = train.Status.Promotion.Candidates
	}
	blocked := slices.DeleteFunc(slices.Clone(before), func(c trainyardv1.PromotionCandidate) bool { return c.Phase != trainyardv1.PromotionBlocked })

	source, latest, err := r.sourceLatest(ctx, train)
	if err != nil {
		return ctrl.Result{}, err
	}
	if latest == nil || slices.ContainsFunc(blocked, func(c trainyardv1.PromotionCandidate) bool {
		return ordering.Canonical(c.Version) == ordering.Canonical(latest.Version)
	}) {
		// Nothing to promote, or retracted once: never promoted, whatever
		// happens to it after.
		r.wakeups.Cancel(req.NamespacedName)
		return done(r.patch(ctx, train, blocked))
	}
	var prev *trainyardv1.PromotionCandidate
	if i := slices.IndexFunc(before, func(c trainyardv1.PromotionCandidate) bool { return c.Release == latest.Name }); i >= 0 {
		prev = &before[i]
	}
	cand, next, err := r.evaluate(ctx, train, source, latest, prev)
	if err != nil || cand == nil {
		return ctrl.Result{}, err
	}
	if !next.IsZero() {
		t := metav1.NewTime(next.Truncate(time.Second))
		cand.NextEvaluation = &t
		r.wakeups.At(req.NamespacedName, next)
	} else {
		r.wakeups.Cancel(req.NamespacedName)
	}
	cands := []trainyardv1.PromotionCandidate{*cand}
	if cand.Phase == trainyardv1.PromotionBlocked {
		cands = nil
		blocked = append(blocked, *cand)
	}
	if len(blocked) > maxBlocked {
		blocked = blocked[len(blocked)-maxBlocked:]
	}
	return done(r.patch(ctx, train, append(cands, blocked...)))
}

// sourceLatest is the train the promotion is from and its latest release
// (nil while it has none with a time since which it is latest).
func (r *PromotionReconciler) sourceLatest(ctx context.Context, train *trainyardv1.ReleaseTrain) (*trainyardv1.ReleaseTrain, *trainyardv1.ReleaseRef, error) {
	source := &trainyardv1.ReleaseTrain{}
	key := types.NamespacedName{Namespace: train.Namespace, Name: trainyardv1.TrainName(train.Spec.Component, train.Spec.Promotion.From)}
	if err := r.Get(ctx, key, source); client.IgnoreNotFound(err) != nil {
		return nil, nil, err
	}
	latest := source.Status.Latest
	if latest == nil || latest.Since == nil {
		return source, nil, nil
	}
	return source, latest, nil
}

// evaluate is the candidate's state: its gates, kept from prev where they
// have not changed, and what they decide; next is when a gate can change
// (zero: none will). A nil candidate: the release is not in the cache yet
// (the source's status is ahead of it; its arrival brings us back).
func (r *PromotionReconciler) evaluate(ctx context.Context, train, source *trainyardv1.ReleaseTrain, latest *trainyardv1.ReleaseRef,
	prev *trainyardv1.PromotionCandidate) (*trainyardv1.PromotionCandidate, time.Time, error) {
	now := r.Clock.Now()
	rel := &trainyardv1.ComponentRelease{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: train.Namespace, Name: latest.Name}, rel); err != nil {
		return nil, time.Time{}, client.IgnoreNotFound(err)
	}
	promoted, err := r.promotedRelease(ctx, train, latest.Version)
	if err != nil {
		return nil, time.Time{}, err
	}
	in, err := r.inputs(ctx, train, source, rel, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	res := promotion.Evaluate(train.Spec.Promotion, in)
	var prevGates []trainyardv1.GateStatus
	if prev != nil {
		prevGates = prev.Gates
	}
	promotion.Keep(res.Gates, prevGates, now)
	cand := &trainyardv1.PromotionCandidate{Version: latest.Version, Release: latest.Name, Phase: trainyardv1.PromotionPending, Gates: res.Gates}
	if err := r.decide(ctx, train, rel, promoted, in, res, prev, cand, now); err != nil {
		return nil, time.Time{}, err
	}
	if cand.Phase != trainyardv1.PromotionPending {
		return cand, time.Time{}, nil
	}
	return cand, res.Next, nil
}

// decide sets the candidate's phase: promoted already (kept), blocked by a
// retraction, waiting for its gates or a resumption, or promoted now.
func (r *PromotionReconciler) decide(ctx context.Context, train *trainyardv1.ReleaseTrain, rel, promoted *trainyardv1.ComponentRelease,
	in promotion.Input, res promotion.Result, prev, cand *trainyardv1.PromotionCandidate, now time.Time) error {
	switch {
	case promoted != nil:
		cand.Phase, cand.Message = trainyardv1.PromotionPromoted, fmt.Sprintf("%s is on %s", promoted.Name, train.Spec.Train)
		cand.Promoted = &promoted.CreationTimestamp
		if prev != nil && prev.Promoted != nil {
			cand.Promoted = prev.Promoted
		}
	case in.Retracted != "":
		cand.Phase, cand.Message = trainyardv1.PromotionBlocked, "retracted before promotion: "+in.Retracted
	case !res.Pass:
		cand.Message = "waiting for: " + pendingGates(res.Gates)
	case train.Spec.Promotion.Suspend:
		cand.Message = "every gate passes; promotion is suspended"
	default:
		created, err := r.promote(ctx, train, rel)
		if err != nil {
			return err
		}
		cand.Phase, cand.Message = trainyardv1.PromotionPromoted, fmt.Sprintf("%s is on %s", created.Name, train.Spec.Train)
		t := metav1.NewTime(now.Truncate(time.Second))
		cand.Promoted = &t
	}
	return nil
}

func pendingGates(gates []trainyardv1.GateStatus) string {
	var out []string
	for _, g := range gates {
		if g.State != trainyardv1.GatePass {
			out = append(out, fmt.Sprintf("%s (%s)", g.Name, g.Reason))
		}
	}
	return fmt.Sprint(out)
}

// inputs gathers what the gates look at: the candidate, the source train's
// clusters, and the approvals in force.
func (r *PromotionReconciler) inputs(ctx context.Context, train, source *trainyardv1.ReleaseTrain, rel *trainyardv1.ComponentRelease, now time.Time) (promotion.Input, error) {
	in := promotion.Input{Since: source.Status.Latest.Since.Time, Now: now}
	if rel.Spec.Retracted != nil {
		in.Retracted = rel.Spec.Retracted.Reason
	}
	want := ordering.Canonical(rel.Spec.Version)
	// The cache's reports, read in place (index.Reports).
	err := r.reports.Each(ctx, train.Namespace, index.ReportTrain, source.Name, func(rep *trainyardv1.ClusterReport) {
		runs := slices.ContainsFunc(rep.Spec.Components, func(c trainyardv1.ReportedComponent) bool {
			return trainyardv1.TrainName(c.Name, c.Train) == source.Name && ordering.Canonical(c.Version) == want
		})
		stale := conditions.IsTrue(rep.Status.Conditions, trainyardv1.ConditionStale)
		if runs && (stale || conditions.IsTrue(rep.Status.Conditions, trainyardv1.ConditionRunningRetracted)) {
			in.Unhealthy = append(in.Unhealthy, rep.Spec.ClusterID)
		}
		switch {
		case stale:
		case rep.CreationTimestamp.After(rel.CreationTimestamp.Time):
			// Registered after the candidate was published (both times the
			// API server's): it cannot vouch for it (promotion.Input).
			in.Newer++
		default:
			in.Following++
			if runs {
				in.Running++
			}
		}
	})
	if err != nil {
		return in, err
	}
	slices.Sort(in.Unhealthy)
	var approvals trainyardv1.PromotionApprovalList
	if err := r.List(ctx, &approvals, client.InNamespace(train.Namespace)); err != nil {
		return in, err
	}
	for _, a := range approvals.Items {
		if a.Spec.Train == train.Name && a.Spec.Ring == "" && ordering.Canonical(a.Spec.Version) == want && now.Before(a.Spec.Expires.Time) {
			in.Approvals = append(in.Approvals, a)
		}
	}
	return in, nil
}

// promotedRelease finds the candidate's version on the target train.
func (r *PromotionReconciler) promotedRelease(ctx context.Context, train *trainyardv1.ReleaseTrain, version string) (*trainyardv1.ComponentRelease, error) {
	var rels trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &rels, client.InNamespace(train.Namespace),
		client.MatchingFields{index.ReleaseVersion: index.VersionKey(train.Name, version)}); err != nil {
		return nil, err
	}
	if len(rels.Items) == 0 {
		return nil, nil
	}
	return &rels.Items[0], nil
}

// promote creates the release on the target train. Its name is the
// canonical one, so a second creation (another replica, a restart before
// the status was written, a cache that has not seen the first) is refused
// by the API server: exactly once.
func (r *PromotionReconciler) promote(ctx context.Context, train *trainyardv1.ReleaseTrain, from *trainyardv1.ComponentRelease) (*trainyardv1.ComponentRelease, error) {
	rel := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: train.Namespace,
			Name:      trainyardv1.ReleaseName(train.Spec.Component, train.Spec.Train, from.Spec.Version),
			Labels:    from.Labels,
		},
		Spec: trainyardv1.ComponentReleaseSpec{
			Component: from.Spec.Component, Train: train.Spec.Train, Version: from.Spec.Version,
			Description: from.Spec.Description, Fixes: from.Spec.Fixes, Image: from.Spec.Image,
			Data: from.Spec.Data, PromotedFrom: from.Name,
		},
	}
	err := r.Create(ctx, rel)
	if apierrors.IsAlreadyExists(err) {
		return rel, nil
	}
	if err != nil {
		return nil, fmt.Errorf("promoting %s to %s: %w", from.Name, train.Spec.Train, err)
	}
	r.Recorder.Eventf(train, rel, corev1.EventTypeNormal, "Promoted", "Promote",
		"promoted %s %s from %s to %s", from.Spec.Component, from.Spec.Version, from.Spec.Train, train.Spec.Train)
	return rel, nil
}

func (r *PromotionReconciler) patch(ctx context.Context, train *trainyardv1.ReleaseTrain, cands []trainyardv1.PromotionCandidate) error {
	var st *trainyardv1.PromotionStatus
	if train.Spec.Promotion != nil {
		st = &trainyardv1.PromotionStatus{Candidates: cands}
	}
	if equality.Semantic.DeepEqual(train.Status.Promotion, st) {
		return nil
	}
	before := train.DeepCopy()
	train.Status.Promotion = st
	// Under an optimistic lock: a reconcile on a cache that has not seen
	// the last write (a Blocked candidate) must not overwrite it.
	err := r.Status().Patch(ctx, train, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return errRetry
	}
	return client.IgnoreNotFound(err)
}

// done ends a reconcile: a lost write race is tried again soon, quietly.
func done(err error) (ctrl.Result, error) {
	if errors.Is(err, errRetry) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, err
}

// errRetry makes the controller try again (with its backoff) after a write
// lost to a newer version of the object.
var errRetry = errors.New("the train changed meanwhile")

// SetupWithManager watches promoting trains, their source trains, the
// candidates, the source's clusters, and approvals.
func (r *PromotionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.wakeups = newWakeups(r.Clock)
	r.reports = index.Reports{Cache: mgr.GetCache(), Reader: r.Client}
	return ctrl.NewControllerManagedBy(mgr).
		Named("promotion").
		For(&trainyardv1.ReleaseTrain{}, builder.WithPredicates(predicate.GenerationChangedPredicate{},
			predicate.NewPredicateFuncs(func(o client.Object) bool {
				return o.(*trainyardv1.ReleaseTrain).Spec.Promotion != nil || o.(*trainyardv1.ReleaseTrain).Status.Promotion != nil
			}))).
		Watches(&trainyardv1.ReleaseTrain{}, handler.EnqueueRequestsFromMapFunc(r.promotingFrom),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
				o, n := e.ObjectOld.(*trainyardv1.ReleaseTrain), e.ObjectNew.(*trainyardv1.ReleaseTrain)
				return !equality.Semantic.DeepEqual(o.Status.Latest, n.Status.Latest) ||
					!equality.Semantic.DeepEqual(o.Status.Adoption, n.Status.Adoption)
			}})).
		Watches(&trainyardv1.ComponentRelease{}, handler.EnqueueRequestsFromMapFunc(r.trainsOfRelease),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ClusterReport{}, handler.EnqueueRequestsFromMapFunc(r.trainsOfReport),
			builder.WithPredicates(healthChanged)).
		Watches(&trainyardv1.PromotionApproval{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				a := o.(*trainyardv1.PromotionApproval)
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.Train}}}
			})).
		WatchesRawSource(r.wakeups).
		Complete(r)
}

// promotingFrom maps a train to the trains that promote from it.
func (r *PromotionReconciler) promotingFrom(ctx context.Context, o client.Object) []reconcile.Request {
	return r.trainsPromotingFrom(ctx, o.GetNamespace(), o.GetName())
}

func (r *PromotionReconciler) trainsPromotingFrom(ctx context.Context, ns, source string) []reconcile.Request {
	var trains trainyardv1.ReleaseTrainList
	if err := r.List(ctx, &trains, client.InNamespace(ns), client.MatchingFields{index.TrainPromotionSource: source},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(trains.Items))
	for i := range trains.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&trains.Items[i])})
	}
	return out
}

// trainsOfRelease maps a release to the trains promoting from its train
// (a candidate retracted, edited) and to its own train (a promotion done).
func (r *PromotionReconciler) trainsOfRelease(ctx context.Context, o client.Object) []reconcile.Request {
	rel := o.(*trainyardv1.ComponentRelease)
	own := trainyardv1.TrainName(rel.Spec.Component, rel.Spec.Train)
	return append(r.trainsPromotingFrom(ctx, rel.Namespace, own),
		reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rel.Namespace, Name: own}})
}

// trainsOfReport maps a report to the trains promoting from the trains it follows.
func (r *PromotionReconciler) trainsOfReport(ctx context.Context, o client.Object) []reconcile.Request {
	rep := o.(*trainyardv1.ClusterReport)
	var out []reconcile.Request
	for _, c := range rep.Spec.Components {
		out = append(out, r.trainsPromotingFrom(ctx, rep.Namespace, trainyardv1.TrainName(c.Name, c.Train))...)
	}
	return out
}

// healthChanged passes report changes that move the adoption and health
// gates: what it runs, and its Stale and RunningRetracted conditions.
var healthChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
		if o.Generation != n.Generation {
			return true
		}
		for _, t := range []string{trainyardv1.ConditionStale, trainyardv1.ConditionRunningRetracted} {
			if conditions.IsTrue(o.Status.Conditions, t) != conditions.IsTrue(n.Status.Conditions, t) {
				return true
			}
		}
		return false
	},
}
