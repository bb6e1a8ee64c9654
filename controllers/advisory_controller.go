package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
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
	"github.com/trainyard-dev/trainyard/internal/exposure"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// AdvisoryReconciler computes each Advisory's exposure: the clusters that
// run an affected version of one of its components, less those a risk
// acceptance in force covers (internal/exposure decides; this gathers).
type AdvisoryReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.WithDelayedExecution

	wakeups *wakeups
	series  exposedSeries
	reports index.Reports
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
			r.series.forget(req.NamespacedName)
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
	prev := meta.FindStatusCondition(adv.Status.Conditions, trainyardv1.ConditionExposed)
	wasExposed := prev != nil && (prev.Status == metav1.ConditionTrue || prev.Reason == trainyardv1.ReasonResolved)
	switch {
	case adv.Spec.Withdrawn != nil:
		st.Exposed = &trainyardv1.Exposure{}
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, false, "Withdrawn", "the advisory is withdrawn")
	case e.Clusters > 0:
		st.Exposed = &e
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, true, "AffectedVersionsRun",
			fmt.Sprintf("%d clusters run an affected version: %s", e.Clusters, listIDs(e.ClusterIDs, int(e.Clusters))))
	case wasExposed:
		// The Resolved reason stays until clusters are exposed again:
		// notifications tell a resolution from "never exposed" by it.
		st.Exposed = &e
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, false, trainyardv1.ReasonResolved,
			"no cluster runs an affected version any more")
	default:
		st.Exposed = &e
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionExposed, false, "NoAffectedVersionsRun", "no cluster runs an affected version")
	}
	var added []trainyardv1.ExpeditedFix
	if adv.Spec.Expedite && adv.Spec.Withdrawn == nil {
		st.Expedited, added = expedited(adv.Status.Expedited, fixes(adv, reports), metav1.NewTime(r.Clock.Now().UTC().Truncate(time.Second)))
	} else {
		st.Expedited = nil
	}
	conditions.MarkReady(&st.Conditions, gen, "Reconciled", "exposure reflects the latest reports")
	if !equality.Semantic.DeepEqual(&adv.Status, st) {
		before := adv.DeepCopy()
		patched := adv.DeepCopy()
		patched.Status = *st
		// Under an optimistic lock: a write from a cache that had not seen
		// the last one would record an expedite twice or lose its since.
		if err := r.Status().Patch(ctx, patched, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		} else if err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		for _, f := range added {
			r.Recorder.Eventf(patched, nil, corev1.EventTypeNormal, "Expedited", "Expedite",
				"%s expedites %s on %s: rollout rings no longer hold its exposed clusters back from it", adv.Spec.ID, f.Version, f.Train)
		}
	}
	r.series.record(req.NamespacedName, adv, e.Clusters)
	if !wake.IsZero() {
		// An acceptance that took a cluster out expires: it is exposed again then.
		r.wakeups.At(req.NamespacedName, wake)
	} else {
		r.wakeups.Cancel(req.NamespacedName)
	}
	return ctrl.Result{}, nil
}

// fixes are the releases the exposed clusters are recommended while the
// advisory expedites, per train: read from the reports' status, so the
// record names exactly what the clusters are told (their graph, risks,
// policy and other advisories included). The reports are written after
// the advisory changes; their writes bring the advisory back here.
func fixes(adv *trainyardv1.Advisory, reports []trainyardv1.ClusterReport) []trainyardv1.ExpeditedFix {
	var out []trainyardv1.ExpeditedFix
	for i := range reports {
		if !reports[i].StatusCurrent() {
			continue // its status may pair a component with the train it left: its next write brings the advisory back
		}
		for _, cs := range reports[i].Status.Components {
			if cs.Recommended == "" || !slices.ContainsFunc(cs.GetAdvisories(), func(a trainyardv1.ComponentAdvisory) bool {
				return a.ID == adv.Spec.ID && a.Expedite
			}) {
				continue
			}
			f := trainyardv1.ExpeditedFix{Train: trainyardv1.TrainName(cs.Name, reports[i].TrainOf(cs.Name)), Version: cs.Recommended}
			if !slices.ContainsFunc(out, func(o trainyardv1.ExpeditedFix) bool { return o.Train == f.Train && o.Version == f.Version }) {
				out = append(out, f)
			}
		}
	}
	return out
}

// compareVersions orders semantic versions; the fixes are releases that
// parsed, so the fallback to text only keeps the order total.
func compareVersions(a, b string) int {
	va, errA := ordering.Parse(a)
	vb, errB := ordering.Parse(b)
	if errA != nil || errB != nil {
		return cmp.Compare(a, b)
	}
	return va.Compare(vb)
}

// maxExpedited bounds status.expedited, as its schema does.
const maxExpedited = 32

// expedited is the new status.expedited (sorted, each since its first
// appearance) and the fixes it adds.
func expedited(prev, fixes []trainyardv1.ExpeditedFix, now metav1.Time) (out, added []trainyardv1.ExpeditedFix) {
	for _, f := range fixes {
		i := slices.IndexFunc(prev, func(p trainyardv1.ExpeditedFix) bool { return p.Train == f.Train && p.Version == f.Version })
		if i >= 0 {
			f.Since = prev[i].Since
		} else {
			f.Since = now
			added = append(added, f)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b trainyardv1.ExpeditedFix) int {
		return cmp.Or(cmp.Compare(a.Train, b.Train), compareVersions(a.Version, b.Version))
	})
	if len(out) > maxExpedited {
		out = out[:maxExpedited]
	}
	// Only what is kept is added: a fix cut off would be "new" (and its
	// event sent) on every write.
	added = slices.DeleteFunc(added, func(f trainyardv1.ExpeditedFix) bool {
		return !slices.ContainsFunc(out, func(o trainyardv1.ExpeditedFix) bool { return o.Train == f.Train && o.Version == f.Version })
	})
	return out, added
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
// each once: shallow copies of the cache's (as a list with
// UnsafeDisableDeepCopy makes), which nothing here changes.
func (r *AdvisoryReconciler) reportsOf(ctx context.Context, adv *trainyardv1.Advisory) ([]trainyardv1.ClusterReport, error) {
	var out []trainyardv1.ClusterReport
	components, reports := map[string]bool{}, map[string]bool{}
	for _, c := range adv.Spec.Affected {
		if components[c.Component] {
			continue
		}
		components[c.Component] = true
		if err := r.reports.EachRunning(ctx, adv.Namespace, c.Component, func(rep *trainyardv1.ClusterReport) {
			if !reports[rep.Name] {
				reports[rep.Name] = true
				out = append(out, *rep)
			}
		}); err != nil {
			return nil, err
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
	r.reports = index.Reports{Cache: mgr.GetCache(), Reader: r.Client}
	return ctrl.NewControllerManagedBy(mgr).
		Named("advisory").
		For(&trainyardv1.Advisory{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ClusterReport{}, handler.EnqueueRequestsFromMapFunc(r.advisoriesOfReport),
			builder.WithPredicates(reportRunsOtherwise)).
		// What an expedite records comes from the reports' status: their
		// writes bring back the expediting advisories only, a second
		// later, so that a burst of thousands is one reconcile.
		Watches(&trainyardv1.ClusterReport{}, handler.Funcs{
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
				o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
				if sameAdvisories(o.Status.Components, n.Status.Components) {
					return
				}
				for _, req := range r.advisoriesOfReport(ctx, n) {
					a := &trainyardv1.Advisory{}
					if err := r.Get(ctx, req.NamespacedName, a, client.UnsafeDisableDeepCopy); err == nil && a.Spec.Expedite {
						q.AddAfter(req, expediteBatch)
					}
				}
			},
		}).
		Watches(&trainyardv1.RiskAcceptance{}, handler.EnqueueRequestsFromMapFunc(r.advisoriesInNamespace)).
		WatchesRawSource(r.wakeups).
		Complete(r)
}

// expediteBatch is how long an expediting advisory waits for its reports'
// writes to settle before it records their fixes.
const expediteBatch = time.Second

// reportRunsOtherwise passes report events that can change an exposure:
// creation, deletion, and a change of what it runs or of its labels (an
// acceptance's selector).
var reportRunsOtherwise = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
		return o.Generation != n.Generation || !sameUserLabels(o.Labels, n.Labels)
	},
}

// sameAdvisories tells whether two statuses list the same advisories and
// recommendations.
func sameAdvisories(a, b []trainyardv1.ComponentStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		aa, ba := a[i].GetAdvisories(), b[i].GetAdvisories()
		if a[i].Name != b[i].Name || a[i].Recommended != b[i].Recommended || len(aa) != len(ba) {
			return false
		}
		for j := range aa {
			if aa[j].ID != ba[j].ID || aa[j].Expedite != ba[j].Expedite {
				return false
			}
		}
	}
	return true
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
