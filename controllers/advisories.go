package controllers

import (
	"cmp"
	"context"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/exposure"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/upgrade"
)

// What the report and train controllers need of advisories: a component's
// advisories, those that apply to one version, and how they hold
// recommendations back (issue 30).

// componentAdvisories are the advisories of a component, by ID: the
// cache's objects, read only.
func componentAdvisories(ctx context.Context, c client.Reader, ns, component string) ([]trainyardv1.Advisory, error) {
	var list trainyardv1.AdvisoryList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.UnsafeDisableDeepCopy,
		client.MatchingFields{index.AdvisoryComponent: component}); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b trainyardv1.Advisory) int {
		return cmp.Or(cmp.Compare(a.Spec.ID, b.Spec.ID), cmp.Compare(a.Name, b.Name))
	})
	return list.Items, nil
}

// advisoryAccepted tells whether a risk acceptance in force names the
// advisory, by ID or alias (accepted: nil when none is in force).
func advisoryAccepted(a *trainyardv1.AdvisorySpec, accepted func(string) bool) bool {
	return accepted != nil && slices.ContainsFunc(exposure.Names(a), accepted)
}

// applying are the advisories that affect version of component on train,
// less those accepted, each ID once.
func applying(advs []trainyardv1.Advisory, component, train, version string, accepted func(string) bool) []*trainyardv1.Advisory {
	var out []*trainyardv1.Advisory
	for i := range advs {
		a := &advs[i]
		if exposure.Affects(&a.Spec, component, train, version) && !advisoryAccepted(&a.Spec, accepted) &&
			!slices.ContainsFunc(out, func(o *trainyardv1.Advisory) bool { return o.Spec.ID == a.Spec.ID }) {
			out = append(out, a)
		}
	}
	return out
}

// holdingBack is how a recommendation names the advisories that hold a
// release back.
func holdingBack(as []*trainyardv1.Advisory) []upgrade.Advisory {
	out := make([]upgrade.Advisory, 0, len(as))
	for _, a := range as {
		u := upgrade.Advisory{ID: a.Spec.ID, Summary: a.Spec.Summary}
		if len(a.Spec.References) > 0 {
			u.URL = a.Spec.References[0].URL
		}
		out = append(out, u)
	}
	return out
}

// componentAdvisoryList is a component status's advisories: at most
// MaxComponentAdvisories, each since when it was first listed (now when
// new).
func componentAdvisoryList(as []*trainyardv1.Advisory, prev *trainyardv1.ComponentStatus, now metav1.Time) []trainyardv1.ComponentAdvisory {
	var out []trainyardv1.ComponentAdvisory
	var was []trainyardv1.ComponentAdvisory
	if prev != nil {
		was = prev.GetAdvisories()
	}
	for _, a := range as {
		if len(out) == trainyardv1.MaxComponentAdvisories {
			break
		}
		ca := trainyardv1.ComponentAdvisory{ID: a.Spec.ID, Since: now, Expedite: a.Spec.Expedite}
		if i := slices.IndexFunc(was, func(p trainyardv1.ComponentAdvisory) bool { return p.ID == ca.ID }); i >= 0 {
			ca.Since = was[i].Since
		}
		out = append(out, ca)
	}
	return out
}

// advisoryConcerns tells whether an advisory can change a report's status:
// the report lists it, or it affects a version the report runs, is
// recommended, goes through or is held back from.
func advisoryConcerns(a *trainyardv1.Advisory, rep *trainyardv1.ClusterReport, component string) bool {
	affects := func(train, v string) bool { return v != "" && exposure.Affects(&a.Spec, component, train, v) }
	for _, c := range rep.Spec.Components {
		if c.Name == component && affects(cmp.Or(c.Train, trainyardv1.DefaultTrain), c.Version) {
			return true
		}
	}
	for i := range rep.Status.Components {
		cs := &rep.Status.Components[i]
		if cs.Name != component {
			continue
		}
		train := rep.TrainOf(cs.Name)
		if slices.ContainsFunc(cs.GetAdvisories(), func(x trainyardv1.ComponentAdvisory) bool { return x.ID == a.Spec.ID }) ||
			affects(train, cs.Installed) || affects(train, cs.Recommended) ||
			slices.ContainsFunc(cs.GetPath(), func(v string) bool { return affects(train, v) }) ||
			(cs.GetHeldBack() != nil && affects(train, cs.GetHeldBack().Version)) {
			return true
		}
		for _, cu := range cs.GetConditional() {
			if affects(train, cu.Version) || slices.ContainsFunc(cu.Risks, func(r trainyardv1.AppliedRisk) bool { return r.Name == a.Spec.ID }) {
				return true
			}
		}
	}
	return false
}

// advisoryComponents are the components an advisory names, each once.
func advisoryComponents(a *trainyardv1.Advisory) []string {
	var out []string
	for _, c := range a.Spec.Affected {
		if !slices.Contains(out, c.Component) {
			out = append(out, c.Component)
		}
	}
	return out
}

// bothStates enqueues what its function maps an object to, and for an
// update what it maps both states to: an edit that moves an advisory off a
// component must reach what the component's old state touched.
type bothStates func(context.Context, client.Object) []reconcile.Request

func (f bothStates) Create(ctx context.Context, e event.CreateEvent, q queue) {
	addAll(q, f(ctx, e.Object))
}
func (f bothStates) Delete(ctx context.Context, e event.DeleteEvent, q queue) {
	addAll(q, f(ctx, e.Object))
}
func (f bothStates) Generic(ctx context.Context, e event.GenericEvent, q queue) {
	addAll(q, f(ctx, e.Object))
}
func (f bothStates) Update(ctx context.Context, e event.UpdateEvent, q queue) {
	addAll(q, f(ctx, e.ObjectOld))
	addAll(q, f(ctx, e.ObjectNew))
}

func addAll(q queue, reqs []reconcile.Request) {
	for _, req := range reqs {
		q.Add(req)
	}
}
