package controllers

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
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
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/verification"
)

const (
	// LabelCreatedBy marks ReleaseTrains the controller created; it deletes
	// them again when their last release is gone.
	LabelCreatedBy      = "trainyard.dev/created-by"
	createdByController = "controller"
)

// ReleaseTrainReconciler keeps each ReleaseTrain's latest-per-train view, and
// each of its ComponentReleases' status, current. Requests are named
// <component>.<train>, whether or not the ReleaseTrain exists yet.
type ReleaseTrainReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// DefaultOrdering is the ordering of trains the controller creates.
	DefaultOrdering trainyardv1.Ordering
	Workers         int
	// AdoptionDelay coalesces the recounts of fleet adoption that check-ins
	// trigger (default 1s; longer for trains whose recount is costly).
	AdoptionDelay time.Duration
	// Clock stamps status.latest.since (a fake one in tests, with the
	// promotion's soak); default the real clock.
	Clock clock.PassiveClock
	// reports reads the reports on a train from the cache in place.
	reports index.Reports
	// TrustResync is how often a train a TrustPolicy covers is verified
	// again, so that a rotated or removed key takes effect (default 1m).
	TrustResync time.Duration
	// RegistryTransport fetches signatures from registries (default:
	// RegistryTransport(), which refuses loopback, link-local and the like).
	RegistryTransport http.RoundTripper
	delays            *adoptionDelays
	trust             *trust
}

// +kubebuilder:rbac:groups=trainyard.dev,resources=releasetrains,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=trainyard.dev,resources=releasetrains/status,verbs=get;patch
// +kubebuilder:rbac:groups=trainyard.dev,resources=componentreleases,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=componentreleases/status,verbs=get;patch
// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=advisories,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=trustpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes one train's status from its releases and the reports of
// the clusters that follow it.
func (r *ReleaseTrainReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	component, trainName, ok := trainyardv1.SplitTrainName(req.Name)
	if !ok {
		return ctrl.Result{}, nil // not a train name; the CRD rejects such objects
	}
	// The cache's own objects, not copies: read only, copied before a patch.
	var releases trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &releases, client.InNamespace(req.Namespace),
		client.MatchingFields{index.ReleaseTrain: req.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	train, err := r.ensureTrain(ctx, req.NamespacedName, component, trainName, len(releases.Items))
	if err != nil || train == nil {
		if train == nil {
			forgetTrain(req.Namespace, component, trainName)
			releasesUnverified.DeleteLabelValues(req.Namespace, component, trainName)
			r.delays.forget(req.NamespacedName)
		}
		return ctrl.Result{}, err
	}

	st := train.Status.DeepCopy()
	st.ObservedGeneration = train.Generation
	st.ReleaseCount = int32(len(releases.Items))
	policy, perr := ordering.PolicyOf(train.Spec)
	latest := -1
	if perr != nil {
		// Keep the last known latest: clusters keep a target while a human
		// fixes the range.
		conditions.MarkStalled(&st.Conditions, train.Generation, "InvalidVersionRange", perr.Error())
	} else {
	}
	verdicts, err := r.verifyReleases(ctx, train, releases.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	if perr == nil {
		latest = r.reconcileLatest(train, st, releases.Items, policy, verdicts)
		if err := r.reconcileAdoption(ctx, train, st); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.patchTrainStatus(ctx, train, st); err != nil {
		return ctrl.Result{}, err
	}
	recordTrain(req.Namespace, component, trainName, st)
	var res ctrl.Result
	if verdicts != nil {
		res.RequeueAfter = r.TrustResync // keys may rotate; they cannot be watched
	}
	if perr != nil {
		return res, nil
	}
	return res, r.reconcileReleases(ctx, train, releases.Items, latest, verdicts)
}

// verdict is a covered release's verification under its TrustPolicy.
type verdict struct {
	policy string
	verification.Result
}

// verifyReleases verifies the releases of a train a TrustPolicy covers
// (nil when none does): each digest and bundle once per policy generation
// and key change (trust caches the results).
func (r *ReleaseTrainReconciler) verifyReleases(ctx context.Context, train *trainyardv1.ReleaseTrain,
	releases []trainyardv1.ComponentRelease) ([]verdict, error) {
	policies, err := policiesFor(ctx, r, train.Namespace, train.Spec.Component, train.Spec.Train)
	if err != nil || len(policies) == 0 {
		releasesUnverified.DeleteLabelValues(train.Namespace, train.Spec.Component, train.Spec.Train)
		return nil, err
	}
	// Registry fetches share one budget per reconcile: a slow registry
	// delays this train's verification, not the controller's workers.
	fctx, cancel := context.WithTimeout(ctx, fetchBudget)
	defer cancel()
	first := firstWithDigest(releases)
	out := make([]verdict, len(releases))
	for n, tp := range policies {
		pv, _, err := r.trust.verifier(ctx, tp)
		for i := range releases {
			if n > 0 && !out[i].Verified {
				continue // failed an earlier policy: that is its answer
			}
			rel := &releases[i]
			var v verdict
			switch j, reused := first[digestOf(rel)]; {
			case err != nil:
				// Fail closed: what cannot be read verifies nothing (a key
				// that was revoked must not stay trusted meanwhile).
				v = verdict{policy: tp.Name, Result: verification.Result{Reason: ReasonPolicyUnreadable,
					Message: "reading what the policy trusts: " + verification.Terse(err).Error()}}
			case reused && j != i:
				// A signature says "this image", not "this version": the
				// same signed image under another version would borrow it.
				v = verdict{policy: tp.Name, Result: verification.Result{Reason: ReasonDigestReused,
					Message: fmt.Sprintf("its image's digest is already release %s's (%s): a signature cannot tell the versions apart", releases[j].Name, releases[j].Spec.Version)}}
			default:
				v = verdict{policy: tp.Name, Result: r.trust.verify(fctx, tp, pv, rel)}
			}
			if n > 0 && v.Verified {
				v.policy = out[i].policy + ", " + v.policy
				v.Message = out[i].Message
			}
			out[i] = v
		}
	}
	unverified := 0
	for i := range out {
		if !out[i].Verified && releases[i].Spec.Retracted == nil {
			unverified++
		}
	}
	releasesUnverified.WithLabelValues(train.Namespace, train.Spec.Component, train.Spec.Train).Set(float64(unverified))
	return out, nil
}

// ensureTrain returns the train, creating it when releases exist and it does
// not, or deleting a controller-created one that has no release left (then
// it returns nil).
func (r *ReleaseTrainReconciler) ensureTrain(ctx context.Context, key types.NamespacedName,
	component, trainName string, releases int) (*trainyardv1.ReleaseTrain, error) {
	train := &trainyardv1.ReleaseTrain{}
	err := r.Get(ctx, key, train)
	switch {
	case apierrors.IsNotFound(err) && releases == 0:
		return nil, nil
	case apierrors.IsNotFound(err):
		train = &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{
				Name: key.Name, Namespace: key.Namespace,
				Labels: map[string]string{LabelCreatedBy: createdByController},
			},
			Spec: trainyardv1.ReleaseTrainSpec{Component: component, Train: trainName, Ordering: r.DefaultOrdering},
		}
		if err := r.Create(ctx, train); err != nil {
			return nil, fmt.Errorf("creating ReleaseTrain %s: %w", key, err)
		}
		log.FromContext(ctx).Info("created ReleaseTrain", "ordering", train.Spec.Ordering)
		return train, nil
	case err != nil:
		return nil, err
	case releases == 0 && train.Labels[LabelCreatedBy] == createdByController:
		// Precondition on the UID: never delete a train a user just re-created.
		err := r.Delete(ctx, train, client.Preconditions{UID: &train.UID})
		if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return nil, err
		}
		return nil, nil
	}
	return train, nil
}

// reconcileLatest picks the latest release and moves latest, previous and
// history along when it changes. It returns the latest's index or -1.
func (r *ReleaseTrainReconciler) reconcileLatest(train *trainyardv1.ReleaseTrain, st *trainyardv1.ReleaseTrainStatus,
	releases []trainyardv1.ComponentRelease, policy ordering.Policy, verdicts []verdict) int {
	cands := make([]ordering.Candidate, len(releases))
	for i, rel := range releases {
		var released int64
		if rel.Spec.Released != nil {
			released = rel.Spec.Released.UnixNano()
		}
		// A release its TrustPolicy does not verify is never latest, as a
		// retracted one.
		cands[i] = ordering.NewCandidate(rel.Name, rel.Spec.Version, released,
			rel.Spec.Retracted != nil || (verdicts != nil && !verdicts[i].Verified))
	}
	idx := policy.Latest(cands)
	var next *trainyardv1.ReleaseRef
	if idx >= 0 {
		rel := releases[idx]
		next = &trainyardv1.ReleaseRef{Name: rel.Name, Version: rel.Spec.Version, Released: rel.Spec.Released}
	}
	prev := st.Latest
	if next != nil {
		// since is kept while the same release stays latest; notifications
		// derive the new-latest event's id and time from it.
		if prev != nil && prev.Name == next.Name && prev.Since != nil {
			next.Since = prev.Since
		} else {
			now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
			next.Since = &now
		}
	}
	if !sameRelease(prev, next) {
		if prev != nil && (next == nil || prev.Name != next.Name) {
			st.Previous = prev
		}
		if next != nil && prev != nil && next.Name != prev.Name {
			r.Recorder.Eventf(train, nil, corev1.EventTypeNormal, "NewLatest", "SelectLatest",
				"%s is the latest release of %s on %s (was %s)", next.Version, train.Spec.Component, train.Spec.Train, prev.Version)
		} else if next != nil && prev == nil {
			r.Recorder.Eventf(train, nil, corev1.EventTypeNormal, "NewLatest", "SelectLatest",
				"%s is the latest release of %s on %s", next.Version, train.Spec.Component, train.Spec.Train)
		}
	}
	st.Latest = next
	if next != nil && (len(st.History) == 0 || st.History[0].Name != next.Name) {
		st.History = append([]trainyardv1.ReleaseRef{*next}, st.History...)
	}
	limit := int32(trainyardv1.DefaultHistoryLimit)
	if train.Spec.HistoryLimit != nil {
		limit = *train.Spec.HistoryLimit
	}
	if int32(len(st.History)) > limit {
		st.History = st.History[:limit]
	}
	if len(st.History) == 0 {
		st.History = nil
	}

	switch {
	case next != nil:
		conditions.MarkReady(&st.Conditions, train.Generation, "LatestSelected", fmt.Sprintf("latest is %s", next.Version))
	case len(releases) == 0:
		conditions.MarkReady(&st.Conditions, train.Generation, "NoReleases", "the train has no releases")
	default:
		conditions.MarkReady(&st.Conditions, train.Generation, "NoEligibleRelease",
			fmt.Sprintf("none of the %d releases can be latest under this train's policy (retracted, not verified, not semver, pre-release or out of range)", len(releases)))
	}
	return idx
}

func sameRelease(a, b *trainyardv1.ReleaseRef) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// reconcileAdoption counts the clusters on each version of the train.
func (r *ReleaseTrainReconciler) reconcileAdoption(ctx context.Context, train *trainyardv1.ReleaseTrain, st *trainyardv1.ReleaseTrainStatus) error {
	start := time.Now()
	defer func() { r.delays.counted(client.ObjectKeyFromObject(train), time.Since(start)) }()
	latest := ""
	if st.Latest != nil {
		latest = ordering.Canonical(st.Latest.Version)
	}
	type count struct {
		version string
		n       int32
	}
	byVersion := map[string]*count{}
	canonical := map[string]string{} // a fleet runs few distinct spellings
	component, trainName, _ := trainyardv1.SplitTrainName(train.Name)
	a := &trainyardv1.FleetAdoption{}
	// Counting touches every follower of the train: the cache's objects,
	// read in place (index.Reports), not a copy of each.
	err := r.reports.Each(ctx, train.Namespace, index.ReportTrain, train.Name, func(rep *trainyardv1.ClusterReport) {
		for _, c := range rep.Spec.Components {
			if c.Name != component || c.Train != trainName {
				continue
			}
			canon, ok := canonical[c.Version]
			if !ok {
				canon = ordering.Canonical(c.Version)
				canonical[c.Version] = canon
			}
			switch cnt := byVersion[canon]; {
			case cnt == nil:
				byVersion[canon] = &count{version: c.Version}
			case c.Version < cnt.version:
				// Spellings of one version ("v1.0.0", "1.0.0") are shown
				// the same way whatever the list order.
				cnt.version = c.Version
			}
			byVersion[canon].n++
			a.Clusters++
			if canon == latest {
				a.UpToDate++
			}
		}
	})
	if err != nil {
		return err
	}
	a.Behind = a.Clusters - a.UpToDate
	a.Summary = fmt.Sprintf("%d/%d", a.UpToDate, a.Clusters)
	counts := make([]*count, 0, len(byVersion))
	for _, c := range byVersion {
		counts = append(counts, c)
	}
	slices.SortFunc(counts, func(x, y *count) int {
		if c := cmp.Compare(y.n, x.n); c != 0 {
			return c
		}
		return cmp.Compare(x.version, y.version)
	})
	for i, c := range counts {
		if canon := ordering.Canonical(c.version); canon == latest {
			c.version = st.Latest.Version // the latest as the train spells it
		}
		if i < trainyardv1.MaxAdoptionVersions {
			a.Versions = append(a.Versions, trainyardv1.VersionAdoption{Version: c.version, Clusters: c.n})
		} else {
			a.OtherVersions += c.n
		}
	}
	st.Adoption = a
	return nil
}

func (r *ReleaseTrainReconciler) patchTrainStatus(ctx context.Context, train *trainyardv1.ReleaseTrain, st *trainyardv1.ReleaseTrainStatus) error {
	if equality.Semantic.DeepEqual(&train.Status, st) {
		return nil
	}
	before := train.DeepCopy()
	train.Status = *st
	return r.Status().Patch(ctx, train, client.MergeFrom(before))
}

// reconcileReleases writes each release's status where it changed: whether
// it is latest, its parsed version, and its conditions.
func (r *ReleaseTrainReconciler) reconcileReleases(ctx context.Context, train *trainyardv1.ReleaseTrain,
	releases []trainyardv1.ComponentRelease, latest int, verdicts []verdict) error {
	// The release that loses "latest" is written first, so that readers
	// never see two latest releases of one train.
	advs, err := componentAdvisories(ctx, r, train.Namespace, train.Spec.Component)
	if err != nil {
		return err
	}
	// losers are written first, one by one; the others (a new policy's
	// Verified conditions on a thousand releases, say) in parallel.
	var losers, others []int
	for i := range releases {
		if releases[i].Status.Latest && i != latest {
			losers = append(losers, i)
		} else {
			others = append(others, i)
		}
	}
	var first, rest []func() error // the losers' writes, the others'
	for n, i := range append(losers, others...) {
		rel := &releases[i] // the cache's object: not modified
		st := rel.Status.DeepCopy()
		st.ObservedGeneration = rel.Generation
		st.Latest = i == latest
		st.Semver = ordering.Parsed(rel.Spec.Version)
		wasNotSemver := conditions.IsFalse(rel.Status.Conditions, trainyardv1.ConditionSemver)
		if st.Semver != nil {
			conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionSemver, true, "Parsed", "the version is a semantic version")
		} else {
			conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionSemver, false, "NotSemver",
				fmt.Sprintf("%q is not a semantic version (MAJOR.MINOR.PATCH, optional leading v); it is never latest on a Semver train", rel.Spec.Version))
			if !wasNotSemver {
				r.Recorder.Eventf(rel, nil, corev1.EventTypeWarning, "NotSemver", "ParseVersion",
					"version %q is not a semantic version; it can be latest only on a ReleaseTime train without versionRange", rel.Spec.Version)
			}
		}
		wasRetracted := conditions.IsTrue(rel.Status.Conditions, trainyardv1.ConditionRetracted)
		if rt := rel.Spec.Retracted; rt != nil {
			conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionRetracted, true, "Retracted", rt.Reason)
			if !wasRetracted {
				r.Recorder.Eventf(rel, train, corev1.EventTypeWarning, "Retracted", "Retract",
					"%s %s on %s is retracted: %s", rel.Spec.Component, rel.Spec.Version, train.Spec.Train, rt.Reason)
			}
		} else {
			conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionRetracted, false, "NotRetracted", "the release is not retracted")
		}
		affected(st, rel, train.Spec.Train, advs)
		r.verified(st, rel, verdicts, i)
		if st.Latest {
			conditions.MarkReady(&st.Conditions, rel.Generation, "Latest", "this release is its train's latest")
		} else {
			conditions.MarkReady(&st.Conditions, rel.Generation, "NotLatest", "this release is not its train's latest")
		}
		if equality.Semantic.DeepEqual(&rel.Status, st) {
			continue
		}
		patched := rel.DeepCopy()
		patched.Status = *st
		base := rel
		if len(rel.Status.Conditions) == 0 {
			// The first status write spells latest out, false included (a
			// merge patch leaves out what did not change), so that kubectl's
			// LATEST column reads false, not empty, for a release that was
			// never latest.
			base = rel.DeepCopy()
			base.Status.Latest = !st.Latest
		}
		write := func() error {
			if err := r.Status().Patch(ctx, patched, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("patching status of ComponentRelease %s: %w", patched.Name, err)
			}
			return nil
		}
		if n < len(losers) {
			first = append(first, write)
		} else {
			rest = append(rest, write)
		}
	}
	for _, write := range first {
		if err := write(); err != nil {
			return err
		}
	}
	return parallel(rest, releaseWriters)
}

// releaseWriters is how many release status writes one reconcile has in
// flight.
const releaseWriters = 8

// parallel runs fns, at most n at a time, and returns the first error.
func parallel(fns []func() error, n int) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, n)
	for _, fn := range fns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// Reasons of the Verified condition besides internal/verification's.
const (
	ReasonPolicyUnreadable = "PolicyUnreadable"
	ReasonDigestReused     = "DigestReused"
)

// fetchBudget bounds a reconcile's registry fetches, all together.
const fetchBudget = 30 * time.Second

func digestOf(r *trainyardv1.ComponentRelease) string {
	_, d, _ := strings.Cut(r.Spec.Image, "@")
	return d
}

// firstWithDigest is, per image digest, the release that was published
// with it first (creation, then name).
func firstWithDigest(releases []trainyardv1.ComponentRelease) map[string]int {
	first := map[string]int{}
	for i := range releases {
		d := digestOf(&releases[i])
		if d == "" {
			continue
		}
		j, ok := first[d]
		if !ok || releases[i].CreationTimestamp.Before(&releases[j].CreationTimestamp) ||
			(releases[i].CreationTimestamp.Equal(&releases[j].CreationTimestamp) && releases[i].Name < releases[j].Name) {
			first[d] = i
		}
	}
	return first
}

// verified sets a covered release's Verified condition (absent when no
// TrustPolicy covers it), with a Warning event when it turns False.
func (r *ReleaseTrainReconciler) verified(st *trainyardv1.ComponentReleaseStatus, rel *trainyardv1.ComponentRelease, verdicts []verdict, i int) {
	if verdicts == nil {
		meta.RemoveStatusCondition(&st.Conditions, trainyardv1.ConditionVerified)
		return
	}
	v := verdicts[i]
	if v.Verified {
		conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionVerified, true, v.Reason,
			fmt.Sprintf("%s (TrustPolicy %s)", v.Message, v.policy))
		return
	}
	if !conditions.IsFalse(rel.Status.Conditions, trainyardv1.ConditionVerified) {
		r.Recorder.Eventf(rel, nil, corev1.EventTypeWarning, "VerificationFailed", "Verify",
			"%s %s is not verified under TrustPolicy %s (%s): %s; it is never latest or recommended", rel.Spec.Component, rel.Spec.Version, v.policy, v.Reason, clipMessage(v.Message))
	}
	conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionVerified, false, v.Reason,
		fmt.Sprintf("TrustPolicy %s: %s", v.policy, clipMessage(v.Message)))
}

// clipMessage keeps a verification's message to what a condition and an
// event hold comfortably.
func clipMessage(s string) string {
	const n = 1024
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// trainsOfPolicy maps a TrustPolicy to the trains it covers.
func (r *ReleaseTrainReconciler) trainsOfPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	tp := o.(*trainyardv1.TrustPolicy)
	r.trust.forget(tp.UID) // built again from the new generation
	var trains trainyardv1.ReleaseTrainList
	if err := r.List(ctx, &trains, client.InNamespace(tp.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing trains")
		return nil
	}
	var reqs []reconcile.Request
	for i := range trains.Items {
		if validation.Covers(&tp.Spec, trains.Items[i].Spec.Component, trains.Items[i].Spec.Train) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&trains.Items[i])})
		}
	}
	return reqs
}

// affected sets a release's Affected condition: True naming the advisories
// that affect its version, False when its component has advisories but
// none affects it, absent when the component has none (acceptances do not
// count here: they speak for clusters, not releases).
func affected(st *trainyardv1.ComponentReleaseStatus, rel *trainyardv1.ComponentRelease, train string, advs []trainyardv1.Advisory) {
	if len(advs) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, trainyardv1.ConditionAffected)
		return
	}
	var ids []string
	for _, a := range applying(advs, rel.Spec.Component, train, rel.Spec.Version, nil) {
		ids = append(ids, a.Spec.ID)
	}
	if len(ids) > 0 {
		conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionAffected, true, "AffectedByAdvisory", "affected by "+list(ids))
	} else {
		conditions.Set(&st.Conditions, rel.Generation, trainyardv1.ConditionAffected, false, "NotAffected",
			"no advisory of "+rel.Spec.Component+" affects this version")
	}
}

// trainsOfAdvisory maps an advisory to the trains of the components it
// names (those it lists, or all of the component's).
func (r *ReleaseTrainReconciler) trainsOfAdvisory(ctx context.Context, o client.Object) []reconcile.Request {
	adv := o.(*trainyardv1.Advisory)
	var trains trainyardv1.ReleaseTrainList
	if err := r.List(ctx, &trains, client.InNamespace(adv.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing trains")
		return nil
	}
	var reqs []reconcile.Request
	for i := range trains.Items {
		t := &trains.Items[i]
		if slices.ContainsFunc(adv.Spec.Affected, func(c trainyardv1.AffectedComponent) bool {
			return c.Component == t.Spec.Component && (len(c.Trains) == 0 || slices.Contains(c.Trains, t.Spec.Train))
		}) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(t)})
		}
	}
	return reqs
}

// releaseChanged passes release events that can change the train: spec
// changes, and a change of status.latest. The latter is the controller's own
// write coming back: if the cache was behind when it last compared, the
// release may still carry a "latest" it no longer deserves, and this
// reconcile corrects it.
var releaseChanged = predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.(*trainyardv1.ComponentRelease).Status.Latest != e.ObjectNew.(*trainyardv1.ComponentRelease).Status.Latest
	},
})

// SetupWithManager watches trains, their releases and the reports that
// follow them. The trains' own status changes are ignored: the controller
// writes them.
func (r *ReleaseTrainReconciler) SetupWithManager(mgr ctrl.Manager) error {
	releaseToTrain := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		rel := o.(*trainyardv1.ComponentRelease)
		return []reconcile.Request{{NamespacedName: types.NamespacedName{
			Namespace: rel.Namespace, Name: trainyardv1.TrainName(rel.Spec.Component, rel.Spec.Train)}}}
	})
	if r.AdoptionDelay == 0 {
		r.AdoptionDelay = time.Second
	}
	r.reports = index.Reports{Cache: mgr.GetCache(), Reader: r.Client}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.delays = &adoptionDelays{min: r.AdoptionDelay}
	if r.TrustResync <= 0 {
		r.TrustResync = time.Minute
	}
	if r.RegistryTransport == nil {
		r.RegistryTransport = RegistryTransport()
	}
	r.trust = newTrust(mgr.GetAPIReader(), r.Clock.Now, r.RegistryTransport)
	return ctrl.NewControllerManagedBy(mgr).
		Named("releasetrain").
		For(&trainyardv1.ReleaseTrain{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ComponentRelease{}, releaseToTrain, builder.WithPredicates(releaseChanged)).
		Watches(&trainyardv1.Advisory{}, bothStates(r.trainsOfAdvisory), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.TrustPolicy{}, bothStates(r.trainsOfPolicy), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ClusterReport{}, reportToTrains{delays: r.delays},
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}
