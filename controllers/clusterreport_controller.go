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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/rollout"
	"github.com/trainyard-dev/trainyard/internal/upgrade"
)

// DefaultStaleThreshold suits agents that check in every 12 hours (the Deis
// agent's interval): two missed check-ins and an hour's grace.
const DefaultStaleThreshold = 25 * time.Hour

// conflictRetry is how soon a reconcile that lost a write race runs again.
const conflictRetry = 100 * time.Millisecond

// ClusterReportReconciler computes each cluster's per-component update state,
// summary and conditions, and marks it stale when it stops checking in.
type ClusterReportReconciler struct {
	client.Client
	Recorder       events.EventRecorder
	Clock          clock.WithDelayedExecution
	StaleThreshold time.Duration
	Workers        int

	wakeups *wakeups
	flags   *fleetFlags
	rules   *upgrade.Rules
	own     *ownWrites
	// reports reads the reports a train or an advisory concerns from the
	// cache in place.
	reports index.Reports
}

// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports/status,verbs=get;patch
// +kubebuilder:rbac:groups=trainyard.dev,resources=releasetrains,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=componentreleases,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=riskacceptances,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=advisories,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=trustpolicies,verbs=get;list;watch

// Reconcile computes one report's status.
func (r *ClusterReportReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// The cache's own object (read only): most reconciles write nothing, so
	// a copy is made only for a patch.
	rep := &trainyardv1.ClusterReport{}
	if err := r.Get(ctx, req.NamespacedName, rep, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			r.wakeups.Cancel(req.NamespacedName)
			r.flags.set(req.NamespacedName, false, false)
			r.own.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	st := rep.Status.DeepCopy()
	st.ObservedGeneration = rep.Generation
	initialized := r.reconcileCheckIns(rep, st)
	// wake is the earliest expiry of a risk acceptance the recommendations
	// relied on: the report is reconciled again then.
	var wake time.Time
	if err := r.reconcileComponents(ctx, rep, st, &wake); err != nil {
		return ctrl.Result{}, err
	}
	stale := r.reconcileStaleness(rep, st, wake)
	// A report's True conditions carry no message (as Cluster API's do):
	// the reason says it, and the fleet's lists send every report's bytes.
	conditions.MarkReady(&st.Conditions, reportConditionGeneration, "Reconciled", "")

	if !equality.Semantic.DeepEqual(&rep.Status, st) {
		wasStale := conditions.IsTrue(rep.Status.Conditions, trainyardv1.ConditionStale)
		patched := rep.DeepCopy()
		patched.Status = *st
		var patch client.Patch = client.MergeFrom(rep)
		if initialized || timelineMoved(rep.Status.Components, st.Components) || advisoryListed(rep.Status.Components, st.Components) {
			// Filling in check-in fields must not overwrite a check-in the
			// cache has not seen yet; a version change recorded from a
			// cache that has not seen this controller's own last write
			// would be recorded twice, at two times.
			patch = client.MergeFromWithOptions(rep, client.MergeFromWithOptimisticLock{})
		}
		if err := r.Status().Patch(ctx, patched, patch); apierrors.IsConflict(err) {
			// A check-in landed after our read: a normal race, try again
			// with the newer object.
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		} else if err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.own.record(req.NamespacedName, rep.ResourceVersion, patched.ResourceVersion)
		if stale && !wasStale {
			r.Recorder.Eventf(rep, nil, corev1.EventTypeWarning, "Stale", "CheckStaleness",
				"cluster %s has not checked in since %s (stale threshold %s)",
				rep.Spec.ClusterID, st.LastSeen.UTC().Format(time.RFC3339), r.StaleThreshold)
		}
		rep = patched
	}
	if err := r.reconcileLabels(ctx, rep, stale); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.flags.set(req.NamespacedName, stale, conditions.IsTrue(st.Conditions, trainyardv1.ConditionRunningRetracted))
	return ctrl.Result{}, nil
}

// reconcileCheckIns fills in the check-in record of a report that has none
// yet: its creation is its first check-in (the bridge's and direct-mode
// agents' new reports included, so that a new cluster costs the create and
// this one status write). Later check-ins are recorded by their writers.
// Whoever writes first records the creation, under an optimistic lock, so
// it is counted once. It reports whether it changed anything.
func (r *ClusterReportReconciler) reconcileCheckIns(rep *trainyardv1.ClusterReport, st *trainyardv1.ClusterReportStatus) bool {
	if st.FirstSeen != nil {
		return false
	}
	created := rep.CreationTimestamp.DeepCopy()
	st.FirstSeen = created
	if st.LastSeen == nil {
		st.LastSeen = created
	}
	st.CheckIns++
	return true
}

// reconcileComponents computes each component's state from its train's
// latest and the release of the installed version.
func (r *ClusterReportReconciler) reconcileComponents(ctx context.Context, rep *trainyardv1.ClusterReport, st *trainyardv1.ClusterReportStatus, wake *time.Time) error {
	sum := trainyardv1.ComponentSummary{Total: int32(len(rep.Spec.Components))}
	comps := make([]trainyardv1.ComponentStatus, 0, len(rep.Spec.Components))
	var behind, retracted, unknown []string
	now := metav1.NewTime(r.Clock.Now().UTC().Truncate(time.Second))
	for _, c := range rep.Spec.Components {
		prev := previousStatus(st.Components, c.Name)
		cs, err := r.componentState(ctx, rep, c, prev, now, wake)
		if err != nil {
			return err
		}
		timeline(&cs, prev, st, now)
		readiness(&cs, c, prev, now)
		cs.OmitDerived(st.FirstSeen)
		comps = append(comps, cs)
		switch cs.State {
		case trainyardv1.StateUpToDate:
			sum.UpToDate++
		case trainyardv1.StateUpdateAvailable:
			sum.UpdateAvailable++
			behind = append(behind, c.Name) // the versions are in its status
		case trainyardv1.StateRetracted:
			sum.Retracted++
			retracted = append(retracted, c.Name+" "+c.Version)
		default:
			sum.Unknown++
			unknown = append(unknown, c.Name)
		}
		if len(cs.GetAdvisories()) > 0 {
			sum.Exposed++
		}
	}
	if len(comps) == 0 {
		comps = nil
	}
	st.Components, st.Summary = comps, &sum

	gen := reportConditionGeneration
	switch {
	case sum.Total == 0:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionUpToDate, true, "NoComponents", "")
	case sum.UpToDate == sum.Total:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionUpToDate, true, "AllUpToDate", "")
	case len(retracted) > 0:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionUpToDate, false, "RunningRetracted", "retracted: "+list(retracted))
	case len(behind) > 0:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionUpToDate, false, "UpdatesAvailable", "updates for "+list(behind))
	default:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionUpToDate, false, "Unknown",
			"no train knows the versions of "+list(unknown))
	}
	// RunningRetracted is abnormal-true (as kstatus reads conditions): it is
	// there while it holds, and absent, not False, the rest of the time.
	if len(retracted) > 0 {
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionRunningRetracted, true, "RetractedRelease", list(retracted))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, trainyardv1.ConditionRunningRetracted)
	}
	return nil
}

// reportConditionGeneration is the observedGeneration of a report's
// conditions: none (0, omitted). status.observedGeneration says it once for
// all of them, which is what kstatus reads; four copies of it were 88 bytes
// of every report (issue 32).
const reportConditionGeneration int64 = 0

// timelineMoved tells whether a status adds to a component's timeline:
// a version change, or a new readiness state.
func timelineMoved(before, after []trainyardv1.ComponentStatus) bool {
	for i := range after {
		prev := previousStatus(before, after[i].Name)
		if prev == nil || len(prev.GetHistory()) != len(after[i].GetHistory()) || prev.Installed != after[i].Installed || prev.Ready != after[i].Ready {
			return true
		}
	}
	return false
}

// advisoryListed tells whether a status lists an advisory a component did
// not list before: its since is stamped now, and a write from a cache that
// had not seen an earlier stamp would move it (and notify twice).
func advisoryListed(before, after []trainyardv1.ComponentStatus) bool {
	for i := range after {
		prev := previousStatus(before, after[i].Name)
		for _, a := range after[i].GetAdvisories() {
			if prev == nil || !slices.ContainsFunc(prev.GetAdvisories(), func(p trainyardv1.ComponentAdvisory) bool { return p.ID == a.ID }) {
				return true
			}
		}
	}
	return false
}

// previousStatus is the component's entry in the status as it was.
func previousStatus(comps []trainyardv1.ComponentStatus, name string) *trainyardv1.ComponentStatus {
	for i := range comps {
		if comps[i].Name == name {
			return &comps[i]
		}
	}
	return nil
}

// timeline carries a component's version history over from its previous
// status and records a change of its installed version: from what, to
// what, and when (now: the reconcile of the check-in that reported it).
// since is when the installed version was first reported: the report's
// first check-in for a component it has always had, the change otherwise.
// Soaks are measured from it, never from when a release was published.
func timeline(cs *trainyardv1.ComponentStatus, prev *trainyardv1.ComponentStatus, st *trainyardv1.ClusterReportStatus, now metav1.Time) {
	switch {
	case prev == nil:
		// A component new to the report: reported since its check-in.
		since := now
		if st.LastSeen != nil && len(st.Components) == 0 {
			since = *st.LastSeen // the report's first status: its first check-in
		}
		cs.Since = &since
	case prev.Installed != cs.Installed:
		h := append(slices.Clone(prev.GetHistory()), trainyardv1.VersionChange{From: prev.Installed, To: cs.Installed, At: now})
		if n := len(h); n > trainyardv1.MaxVersionChanges {
			h = h[n-trainyardv1.MaxVersionChanges:]
		}
		cs.Details().History = h
		cs.Since = &now
	default:
		// Absent: firstSeen (also in a status written before since existed).
		cs.Since = prev.SinceOr(st.FirstSeen)
		if h := prev.GetHistory(); len(h) > 0 {
			cs.Details().History = h
		}
		if cs.Since == nil {
			cs.Since = &now
		}
	}
}

// readiness records whether the component's workload is ready, and since
// when: the agent's time when it sends one (never later than now), else
// when trainyard first saw the state. An agent that sends no readiness (a
// Deis agent) leaves it absent, which reads as Unknown, never NotReady.
func readiness(cs *trainyardv1.ComponentStatus, c trainyardv1.ReportedComponent, prev *trainyardv1.ComponentStatus, now metav1.Time) {
	if c.Readiness == nil {
		cs.Ready, cs.ReadySince = "", nil
		return
	}
	cs.Ready = trainyardv1.NotReady
	if c.Readiness.IsReady() {
		cs.Ready = trainyardv1.Ready
	}
	same := prev != nil && prev.Ready == cs.Ready && prev.ReadySince != nil
	switch {
	case c.Readiness.Since != nil && !c.Readiness.Since.After(now.Time):
		t := c.Readiness.Since.Rfc3339Copy()
		cs.ReadySince = &t
	case same: // (an agent's since in the future is not believed)
		cs.ReadySince = prev.ReadySince
	default:
		cs.ReadySince = &now
	}
}

// list joins items for a condition message, keeping it short.
func list(items []string) string {
	const show = 5
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:show], ", "), len(items)-show)
}

func (r *ClusterReportReconciler) componentState(ctx context.Context, rep *trainyardv1.ClusterReport, c trainyardv1.ReportedComponent,
	prev *trainyardv1.ComponentStatus, now metav1.Time, wake *time.Time) (trainyardv1.ComponentStatus, error) {
	trainName := trainyardv1.TrainName(c.Name, c.Train)
	cs := trainyardv1.ComponentStatus{Name: c.Name, Installed: c.Version, State: trainyardv1.StateUnknown}
	trainOf := cmp.Or(c.Train, trainyardv1.DefaultTrain)
	// The advisories that apply to what it runs, train or no train (the
	// advisory counts the cluster either way); an acceptance that takes
	// one out is the team's "not affected" for this cluster.
	advs, err := componentAdvisories(ctx, r, rep.Namespace, c.Name)
	if err != nil {
		return cs, err
	}
	acc := lazyAcceptances{r: r, rep: rep, component: c.Name, wake: wake}
	if len(advs) > 0 {
		accepted, err := acc.get(ctx)
		if err != nil {
			return cs, err
		}
		cs.Details().Advisories = componentAdvisoryList(applying(advs, c.Name, trainOf, c.Version, accepted), prev, now)
	}
	train := &trainyardv1.ReleaseTrain{} // the cache's own object: read only
	if err := r.Get(ctx, types.NamespacedName{Namespace: rep.Namespace, Name: trainName}, train, client.UnsafeDisableDeepCopy); err != nil {
		return cs, client.IgnoreNotFound(err) // no such train: Unknown
	}
	if train.Status.Latest != nil {
		cs.Latest = train.Status.Latest.Version
	}
	var rels trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &rels, client.InNamespace(rep.Namespace), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReleaseVersion: index.VersionKey(trainName, c.Version)}); err != nil {
		return cs, err
	}
	cs.State = trainyardv1.StateOf(c.Version, cs.Latest, len(rels.Items) > 0, anyRetracted(rels.Items))
	hold, held := rollout.HoldOf(train.Spec.Rollout, train.Status.Rollout, train.Name, cs.Latest, rep.Spec.ClusterID, rep.Labels)
	if held {
		cs.Ring = hold.Ring
	} else {
		hold = rollout.Hold{}
	}
	if cs.State != trainyardv1.StateUpToDate {
		if err := r.recommend(ctx, rep, train, c, &cs, advs, &acc, held, hold); err != nil {
			return cs, err
		}
	}
	return cs, nil
}

// recommend computes the component's upgrade target and path over the
// train's releases that its policy lets be latest (internal/upgrade). A
// release an advisory affects is never a hop or a target; a cluster an
// advisory exposes is recommended the nearest fixed version, and when the
// advisory expedites its fix, its ring does not hold it back.
func (r *ClusterReportReconciler) recommend(ctx context.Context, rep *trainyardv1.ClusterReport, train *trainyardv1.ReleaseTrain,
	c trainyardv1.ReportedComponent, cs *trainyardv1.ComponentStatus, advs []trainyardv1.Advisory, acc *lazyAcceptances, held bool, hold rollout.Hold) error {
	policy, err := ordering.PolicyOf(train.Spec)
	if err != nil {
		return nil // the train is Stalled and says why; no recommendation meanwhile
	}
	var rels trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &rels, client.InNamespace(rep.Namespace), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.ReleaseTrain: train.Name}); err != nil {
		return err
	}
	// Under a TrustPolicy, a release is a hop or a target only once it is
	// verified (issue 31): a release published a moment ago, not verified
	// yet, is not recommended meanwhile.
	tp, err := policyFor(ctx, r, rep.Namespace, c.Name, cmp.Or(c.Train, trainyardv1.DefaultTrain))
	if err != nil {
		return err
	}
	in := make([]upgrade.Release, 0, len(rels.Items))
	for _, rel := range rels.Items {
		if !policy.Eligible(ordering.NewCandidate(rel.Name, rel.Spec.Version, 0, rel.Spec.Retracted != nil)) ||
			(tp != nil && !isVerified(&rel)) {
			continue
		}
		in = append(in, upgrade.Release{Version: rel.Spec.Version, Retracted: rel.Spec.Retracted != nil,
			UpgradeFrom: rel.Spec.UpgradeFrom, Risks: rel.Spec.Risks})
	}
	comps := make(map[string]string, len(rep.Spec.Components))
	for _, x := range rep.Spec.Components {
		comps[x.Name] = x.Version
	}
	var accepted func(string) bool
	if anyRisks(in) || len(advs) > 0 { // acceptances only ever accept risks and advisories
		if accepted, err = acc.get(ctx); err != nil {
			return err
		}
	}
	if len(advs) > 0 {
		for i := range in {
			in[i].Advisories = holdingBack(applying(advs, c.Name, cmp.Or(c.Train, trainyardv1.DefaultTrain), in[i].Version, accepted))
		}
	}
	cluster := upgrade.Cluster{ID: rep.Spec.ClusterID, Labels: rep.Labels, Properties: rep.Spec.Properties, Components: comps}
	recommend := upgrade.Recommend
	if len(cs.GetAdvisories()) > 0 {
		recommend = upgrade.RecommendFix
	}
	res := recommend(c.Version, in, cluster, r.rules, accepted)
	expedited := slices.ContainsFunc(cs.GetAdvisories(), func(a trainyardv1.ComponentAdvisory) bool { return a.Expedite })
	if held && !expedited {
		// The ring's limit applies on top of the graph, risks and
		// retractions: what it holds back is shown as heldBack.
		within := slices.DeleteFunc(slices.Clone(in), func(rel upgrade.Release) bool {
			v, err := ordering.Parse(rel.Version)
			return err != nil || !rollout.AtMost(v, hold.Limit)
		})
		if len(within) < len(in) { // else the ring holds nothing back: the same answer
			capped := recommend(c.Version, within, cluster, r.rules, accepted)
			if res.Recommended != "" && ordering.Canonical(capped.Recommended) != ordering.Canonical(res.Recommended) {
				cs.Details().HeldBack = &trainyardv1.HeldBack{Version: res.Recommended, Ring: hold.Ring, Reason: hold.Reason, Until: hold.Until}
			}
			res = capped
		}
	}
	cs.Recommended = res.Recommended
	if len(res.Path) > 0 || len(res.Conditional) > 0 {
		cs.Details().Path, cs.Details().Conditional = res.Path, res.Conditional
	}
	return nil
}

// isVerified tells whether a release's Verified condition is True for its
// current generation.
func isVerified(rel *trainyardv1.ComponentRelease) bool {
	c := meta.FindStatusCondition(rel.Status.Conditions, trainyardv1.ConditionVerified)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == rel.Generation
}

// releaseVerifiedChanged passes a release whose Verified condition changed:
// it can change recommendations without a change of its spec.
var releaseVerifiedChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ComponentRelease), e.ObjectNew.(*trainyardv1.ComponentRelease)
		return isVerified(o) != isVerified(n)
	},
}

func anyRisks(rels []upgrade.Release) bool {
	for _, r := range rels {
		if len(r.Risks) > 0 {
			return true
		}
	}
	return false
}

func anyRetracted(rels []trainyardv1.ComponentRelease) bool {
	for _, r := range rels {
		if r.Spec.Retracted != nil {
			return true
		}
	}
	return false
}

// reconcileStaleness sets Stale from lastSeen and schedules a reconcile at
// the exact moment the report would turn stale: no polling.
func (r *ClusterReportReconciler) reconcileStaleness(rep *trainyardv1.ClusterReport, st *trainyardv1.ClusterReportStatus, wake time.Time) bool {
	key := client.ObjectKeyFromObject(rep)
	deadline := st.LastSeen.Add(r.StaleThreshold)
	if !r.Clock.Now().Before(deadline) {
		if wake.IsZero() {
			r.wakeups.Cancel(key)
		} else {
			r.wakeups.At(key, wake)
		}
		conditions.Set(&st.Conditions, reportConditionGeneration, trainyardv1.ConditionStale, true, "NoRecentCheckIn",
			fmt.Sprintf("no check-in within the stale threshold (%s)", r.StaleThreshold))
		return true
	}
	if !wake.IsZero() && wake.Before(deadline) {
		deadline = wake
	}
	r.wakeups.At(key, deadline)
	// A report that was stale keeps the reason Recovered until it goes stale
	// again: notifications tell a recovery from a new cluster by it, also
	// after a restart.
	if prev := meta.FindStatusCondition(st.Conditions, trainyardv1.ConditionStale); prev != nil &&
		(prev.Status == metav1.ConditionTrue || prev.Reason == trainyardv1.ReasonRecovered) {
		conditions.Set(&st.Conditions, reportConditionGeneration, trainyardv1.ConditionStale, false, trainyardv1.ReasonRecovered,
			fmt.Sprintf("checked in again within the stale threshold (%s) after being stale", r.StaleThreshold))
		return false
	}
	// Stale is abnormal-true, as kstatus reads conditions (and as
	// RunningRetracted is): absent while the cluster has never been stale.
	// Stale=False was 170 bytes of every report of the fleet (issue 32).
	meta.RemoveStatusCondition(&st.Conditions, trainyardv1.ConditionStale)
	return false
}

// SetupWithManager watches reports, and the trains and releases that decide
// their state, each mapped through a field index to exactly the reports it
// affects.
func (r *ClusterReportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.StaleThreshold <= 0 {
		r.StaleThreshold = DefaultStaleThreshold
	}
	r.wakeups = newWakeups(r.Clock)
	r.flags = newFleetFlags()
	r.own = newOwnWrites()
	r.reports = index.Reports{Cache: mgr.GetCache(), Reader: r.Client}
	rules, err := upgrade.NewRules()
	if err != nil {
		return err
	}
	r.rules = rules
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterreport").
		For(&trainyardv1.ClusterReport{}, builder.WithPredicates(r.own.notEcho(), checkInOrSpecChanged)).
		Watches(&trainyardv1.ReleaseTrain{}, trainToReports{r}).
		Watches(&trainyardv1.ComponentRelease{}, handler.EnqueueRequestsFromMapFunc(r.reportsOfRelease),
			builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, releaseVerifiedChanged))).
		Watches(&trainyardv1.RiskAcceptance{}, handler.EnqueueRequestsFromMapFunc(r.reportsOfAcceptance)).
		Watches(&trainyardv1.Advisory{}, bothStates(r.reportsOfAdvisory), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(r.wakeups).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// acceptances are the risks accepted for this cluster's component by
// RiskAcceptances in force; wake becomes the earliest expiry among them.
func (r *ClusterReportReconciler) acceptances(ctx context.Context, rep *trainyardv1.ClusterReport, component string, wake *time.Time) (func(string) bool, error) {
	var items []trainyardv1.RiskAcceptance
	for _, key := range []string{component, index.AnyComponent} {
		var list trainyardv1.RiskAcceptanceList
		if err := r.List(ctx, &list, client.InNamespace(rep.Namespace), client.UnsafeDisableDeepCopy,
			client.MatchingFields{index.AcceptanceComponent: key}); err != nil {
			return nil, err
		}
		items = append(items, list.Items...)
	}
	now := r.Clock.Now()
	accepted := map[string]bool{}
	for i := range items {
		a := &items[i].Spec
		if !now.Before(a.Expires.Time) || !acceptanceCovers(a, rep) {
			continue
		}
		for _, name := range a.Risks {
			accepted[strings.ToLower(name)] = true
		}
		if wake.IsZero() || a.Expires.Time.Before(*wake) {
			*wake = a.Expires.Time
		}
	}
	if len(accepted) == 0 {
		return nil, nil
	}
	// Names are matched without case: an advisory's ID is written
	// "GHSA-…" by its publisher and often "ghsa-…" by people.
	return func(risk string) bool { return accepted[strings.ToLower(risk)] }, nil
}

// lazyAcceptances reads a component's acceptances once, when first needed.
type lazyAcceptances struct {
	r         *ClusterReportReconciler
	rep       *trainyardv1.ClusterReport
	component string
	wake      *time.Time

	done     bool
	accepted func(string) bool
}

func (l *lazyAcceptances) get(ctx context.Context) (func(string) bool, error) {
	if !l.done {
		accepted, err := l.r.acceptances(ctx, l.rep, l.component, l.wake)
		if err != nil {
			return nil, err
		}
		l.done, l.accepted = true, accepted
	}
	return l.accepted, nil
}

// acceptanceCovers tells whether an acceptance names the cluster, by ID or labels.
func acceptanceCovers(a *trainyardv1.RiskAcceptanceSpec, rep *trainyardv1.ClusterReport) bool {
	for _, id := range a.Clusters {
		if strings.EqualFold(id, rep.Spec.ClusterID) {
			return true
		}
	}
	if a.ClusterSelector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(a.ClusterSelector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(rep.Labels))
}

// reportsOfAcceptance maps a risk acceptance to the reports it names.
func (r *ClusterReportReconciler) reportsOfAcceptance(ctx context.Context, o client.Object) []reconcile.Request {
	a := &o.(*trainyardv1.RiskAcceptance).Spec
	var reports trainyardv1.ClusterReportList
	if err := r.List(ctx, &reports, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing reports", "riskAcceptance", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range reports.Items {
		if acceptanceCovers(a, &reports.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&reports.Items[i])})
		}
	}
	return reqs
}

// reportsOfAdvisory maps an advisory to the reports whose status it can
// change (advisoryConcerns): only those are reconciled, and only those
// whose status changes are written.
func (r *ClusterReportReconciler) reportsOfAdvisory(ctx context.Context, o client.Object) []reconcile.Request {
	adv := o.(*trainyardv1.Advisory)
	seen := map[types.NamespacedName]bool{}
	var reqs []reconcile.Request
	for _, component := range advisoryComponents(adv) {
		if err := r.reports.EachRunning(ctx, adv.Namespace, component, func(rep *trainyardv1.ClusterReport) {
			key := client.ObjectKeyFromObject(rep)
			if !seen[key] && advisoryConcerns(adv, rep, component) {
				seen[key] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
		}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing reports", "component", component)
			return nil
		}
	}
	return reqs
}

// reportsOfRelease maps a release to the reports that follow its train: a
// new release, a retraction or an edit of upgradeFrom or risks can change
// any of their recommendations. Each reconcile reads the cache; only
// reports whose status changes are written.
func (r *ClusterReportReconciler) reportsOfRelease(ctx context.Context, o client.Object) []reconcile.Request {
	rel := o.(*trainyardv1.ComponentRelease)
	return r.reportsMatching(ctx, rel.Namespace, trainyardv1.TrainName(rel.Spec.Component, rel.Spec.Train), nil)
}

// reportsMatching lists the reports following a train that pass keep (nil:
// all of them).
func (r *ClusterReportReconciler) reportsMatching(ctx context.Context, ns, train string, keep func(*trainyardv1.ClusterReport) bool) []reconcile.Request {
	// A list, not index.Reports: with the cache's objects in place here,
	// specs of this suite that follow a train change failed (reports moved
	// by a change they do not follow, a status left on an old latest) for
	// a reason not found yet; see docs/performance.md. A train's change of
	// latest or rollout is rare next to the adoption recounts.
	var reports trainyardv1.ClusterReportList
	if err := r.List(ctx, &reports, client.InNamespace(ns), client.MatchingFields{index.ReportTrain: train},
		client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing reports", "train", train)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(reports.Items))
	for i := range reports.Items {
		if keep == nil || keep(&reports.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&reports.Items[i])})
		}
	}
	return reqs
}

// checkInOrSpecChanged passes report updates that change what the cluster
// reported, when it checked in, its labels, or the computed state. A change
// of the computed state that is exactly the controller's own last write
// coming back is dropped before (ownWrites); any other is reconciled again,
// which is cheap (no write when nothing differs) and corrects a decision
// taken on a cache that had not yet seen a write. Metadata-only changes do
// not pass.
var checkInOrSpecChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ClusterReport), e.ObjectNew.(*trainyardv1.ClusterReport)
		return o.Generation != n.Generation || !equality.Semantic.DeepEqual(&o.Status, &n.Status) ||
			!equality.Semantic.DeepEqual(o.Labels, n.Labels) // the labels place it in a rollout ring
	},
}

// latestChanged passes train events that change what is latest.
var latestChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*trainyardv1.ReleaseTrain), e.ObjectNew.(*trainyardv1.ReleaseTrain)
		return !equality.Semantic.DeepEqual(o.Status.Latest, n.Status.Latest)
	},
}
