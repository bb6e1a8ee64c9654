package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/trainyard-dev/trainyard/internal/exposure"
	"github.com/trainyard-dev/trainyard/internal/index"
)

// AdvisoryReconciler computes each Advisory's exposure: the clusters that
// run an affected version of one of its components, less those a risk
// acceptance in force covers (internal/exposure decides; this gathers).
type AdvisoryReconciler struct {
	client.Client
	Clock clock.WithDelayedExecution

	wakeups *wakeups
}

// +kubebuilder:rbac:groups=trainyard.dev,resources=advisories,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=advisories/status,verbs=get;patch

// Reconcile writes one advisory's status.exposed and conditions, when they
// changed.
func (r *AdvisoryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	adv := &trainyardv1.Advisory{}
	if err := r.Get(ctx, req.NamespacedName, adv); err != nil {
		if apierrors.IsNotFound(err) {
			r.wakeups.Cancel(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	reports, err := r.reportsOf(ctx, adv)
	if err != nil {
		return ctrl.Result{}, err
	}
	accepted, wake, err := r.acceptances(ctx, adv)
	if err != nil {
		return ctrl.Result{}, err
	}
	e, _ := exposure.Of(&adv.Spec, reports, accepted)

	st := adv.Status.DeepCopy()
	st.ObservedGeneration = adv.Generation
	gen := adv.Generation
	switch {
	case adv.Spec.Withdrawn != nil:
		st.Exposed = &trainyardv1.Exposure{}
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, false, "Withdrawn", "the advisory is withdrawn")
	case e.Clusters > 0:
		st.Exposed = &e
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, true, "AffectedVersionsRun",
			fmt.Sprintf("%d clusters run an affected version: %s", e.Clusters, listIDs(e.ClusterIDs, int(e.Clusters))))
	default:
		st.Exposed = &e
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, false, "NoAffectedVersionsRun", "no cluster runs an affected version")
	}
	conditions.MarkReady(&st.Conditions, gen, "Reconciled", "exposure reflects the latest reports")
	if !equality.Semantic.DeepEqual(&adv.Status, st) {
		before := adv.DeepCopy()
		adv.Status = *st
		if err := r.Status().Patch(ctx, adv, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	if !wake.IsZero() {
		// An acceptance that took a cluster out expires: it is exposed again then.
		r.wakeups.At(req.NamespacedName, wake)
	} else {
		r.wakeups.Cancel(req.NamespacedName)
	}
	return ctrl.Result{}, nil
}

// listIDs is the first IDs, and how many more there are.
func listIDs(ids []string, total int) string {
	const shown = 5
	s := strings.Join(ids[:min(shown, len(ids))], ", ")
	if total > shown {
		s += fmt.Sprintf(" and %d more", total-shown)
	}
	return s
}

// reportsOf reads the reports that run one of the advisory's components,
// each once.
func (r *AdvisoryReconciler) reportsOf(ctx context.Context, adv *trainyardv1.Advisory) ([]trainyardv1.ClusterReport, error) {
	var out []trainyardv1.ClusterReport
	components, reports := map[string]bool{}, map[string]bool{}
	for _, c := range adv.Spec.Affected {
		if components[c.Component] {
			continue
		}
		components[c.Component] = true
		var list trainyardv1.ClusterReportList
		if err := r.List(ctx, &list, client.InNamespace(adv.Namespace), client.UnsafeDisableDeepCopy,
			client.MatchingFields{index.ReportComponent: c.Component}); err != nil {
			return nil, err
		}
		for _, rep := range list.Items {
			if !reports[rep.Name] {
				reports[rep.Name] = true
				out = append(out, rep)
			}
		}
	}
	return out, nil
}

// acceptances is the function that tells whether a risk acceptance in force
// names the advisory (by ID or alias) for a component of a cluster, and the
// earliest expiry among those in force that name it.
func (r *AdvisoryReconciler) acceptances(ctx context.Context, adv *trainyardv1.Advisory) (func(*trainyardv1.ClusterReport, string) bool, time.Time, error) {
	var list trainyardv1.RiskAcceptanceList
	if err := r.List(ctx, &list, client.InNamespace(adv.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, time.Time{}, err
	}
	names := exposure.Names(&adv.Spec)
	now := r.Clock.Now()
	var wake time.Time
	var inForce []*trainyardv1.RiskAcceptanceSpec
	for i := range list.Items {
		a := &list.Items[i].Spec
		if !now.Before(a.Expires.Time) || !slices.ContainsFunc(a.Risks, func(risk string) bool {
			return slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, risk) })
		}) {
			continue
		}
		inForce = append(inForce, a)
		if wake.IsZero() || a.Expires.Time.Before(wake) {
			wake = a.Expires.Time
		}
	}
	return func(rep *trainyardv1.ClusterReport, component string) bool {
		return slices.ContainsFunc(inForce, func(a *trainyardv1.RiskAcceptanceSpec) bool {
			return (a.Component == "" || a.Component == component) && acceptanceCovers(a, rep)
		})
	}, wake, nil
}

// SetupWithManager watches advisories, the reports that run their
// components (what they run) and risk acceptances.
func (r *AdvisoryReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.wakeups = newWakeups(r.Clock)
	return ctrl.NewControllerManagedBy(mgr).
		Named("advisory").
		For(&trainyardv1.Advisory{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ClusterReport{}, handler.EnqueueRequestsFromMapFunc(r.advisoriesOfReport),
			builder.WithPredicates(reportRunsOtherwise)).
		Watches(&trainyardv1.RiskAcceptance{}, handler.EnqueueRequestsFromMapFunc(r.advisoriesInNamespace)).
		WatchesRawSource(r.wakeups).
		Complete(r)
}

// reportRunsOtherwise passes report events that can change an exposure:
// creation, deletion, and a change of what it runs or of its labels (an
// acceptance's selector).
var reportRunsOtherwise = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
		return o.Generation != n.Generation || !equality.Semantic.DeepEqual(o.Labels, n.Labels)
	},
}

// advisoriesOfReport maps a report to the advisories of the components it runs.
func (r *AdvisoryReconciler) advisoriesOfReport(ctx context.Context, o client.Object) []reconcile.Request {
	rep := o.(*trainyardv1.ClusterReport)
	seen := map[types.NamespacedName]bool{}
	var reqs []reconcile.Request
	for _, c := range rep.Spec.Components {
		var list trainyardv1.AdvisoryList
		if err := r.List(ctx, &list, client.InNamespace(rep.Namespace), client.UnsafeDisableDeepCopy,
			client.MatchingFields{index.AdvisoryComponent: c.Name}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing advisories", "component", c.Name)
			return nil
		}
		for _, a := range list.Items {
			key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
			if !seen[key] {
				seen[key] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
		}
	}
	return reqs
}

// advisoriesInNamespace maps a risk acceptance to every advisory of its
// namespace (few: an acceptance's risks may name any of them).
func (r *AdvisoryReconciler) advisoriesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list trainyardv1.AdvisoryList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing advisories")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, a := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Name}})
	}
	return reqs
}
