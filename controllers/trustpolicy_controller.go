package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/verification"
)

// TrustPolicyReconciler writes each TrustPolicy's status: whether what it
// trusts loads from its Secrets (Ready, naming what is missing or
// malformed), and how many of the releases it decides are verified.
type TrustPolicyReconciler struct {
	client.Client
	Clock clock.PassiveClock
	// Resync is how often the Secrets are read again (they cannot be
	// watched; default 1m).
	Resync time.Duration

	trust *trust
}

// +kubebuilder:rbac:groups=trainyard.dev,resources=trustpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=trustpolicies/status,verbs=get;patch

// Reconcile writes one policy's status when it changed.
func (r *TrustPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tp := &trainyardv1.TrustPolicy{}
	if err := r.Get(ctx, req.NamespacedName, tp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	m, _, problems, err := r.trust.material(ctx, tp)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := tp.Status.DeepCopy()
	st.ObservedGeneration = tp.Generation
	gen := tp.Generation
	_, verr := verification.New(m)
	switch {
	case verr != nil:
		problems = append(problems, verr.Error())
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, false, "InvalidMaterial", strings.Join(problems, "; "))
	case len(problems) > 0:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, false, "MaterialMissing",
			strings.Join(problems, "; ")+"; verifying with the rest")
	default:
		conditions.Set(&st.Conditions, gen, trainyardv1.ConditionReady, true, "Loaded",
			fmt.Sprintf("trusts %d keys and %d keyless identities", len(m.Keys), len(m.Identities)))
	}
	if err := r.count(ctx, tp, st); err != nil {
		return ctrl.Result{}, err
	}
	if !equality.Semantic.DeepEqual(&tp.Status, st) {
		before := tp.DeepCopy()
		tp.Status = *st
		if err := r.Status().Patch(ctx, tp, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

// count counts the releases this policy covers by their Verified
// condition (a release must satisfy every policy that covers it).
func (r *TrustPolicyReconciler) count(ctx context.Context, tp *trainyardv1.TrustPolicy, st *trainyardv1.TrustPolicyStatus) error {
	var rels trainyardv1.ComponentReleaseList
	if err := r.List(ctx, &rels, client.InNamespace(tp.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	st.Verified, st.Failed = 0, 0
	for i := range rels.Items {
		rel := &rels.Items[i]
		if !validation.Covers(&tp.Spec, rel.Spec.Component, rel.Spec.Train) {
			continue
		}
		switch c := meta.FindStatusCondition(rel.Status.Conditions, trainyardv1.ConditionVerified); {
		case c == nil:
		case c.Status == metav1.ConditionTrue:
			st.Verified++
		case c.Status == metav1.ConditionFalse:
			st.Failed++
		}
	}
	return nil
}

// SetupWithManager watches policies and the releases' Verified condition.
func (r *TrustPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Resync <= 0 {
		r.Resync = time.Minute
	}
	r.trust = newTrust(mgr.GetAPIReader(), r.Clock.Now, nil)
	return ctrl.NewControllerManagedBy(mgr).
		Named("trustpolicy").
		For(&trainyardv1.TrustPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trainyardv1.ComponentRelease{}, handler.EnqueueRequestsFromMapFunc(r.policiesInNamespace),
			builder.WithPredicates(releaseVerifiedChanged)).
		Complete(r)
}

// policiesInNamespace maps a release to its namespace's policies (few).
func (r *TrustPolicyReconciler) policiesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list trainyardv1.TrustPolicyList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing trust policies")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
