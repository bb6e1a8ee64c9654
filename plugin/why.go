package plugin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// WhyView is `why -o json`: a component's state and the reasons for it, in
// the order a person reads them.
type WhyView struct {
	Namespace string                     `json:"namespace"`
	Cluster   string                     `json:"cluster"`
	Component string                     `json:"component"`
	Train     string                     `json:"train"`
	Running   string                     `json:"running"`
	State     trainyardv1.ComponentState `json:"state"`
	Latest    string                     `json:"latest,omitempty"`
	Behind    Behind                     `json:"behind"`
	// retraction is why the running release was retracted.
	Retraction string       `json:"retraction,omitempty"`
	Stale      string       `json:"stale"`
	LastSeen   *metav1.Time `json:"lastSeen,omitempty"`
	Reasons    []string     `json:"reasons"`
	// recommended, path and conditional are the controller's upgrade
	// recommendation for this component (absent when it has none).
	Recommended string                          `json:"recommended,omitempty"`
	Path        []string                        `json:"path,omitempty"`
	Conditional []trainyardv1.ConditionalUpdate `json:"conditional,omitempty"`
	// ring is the cluster's rollout ring on the train, and heldBack what
	// the ring holds back (docs/rollout.md).
	Ring     string                `json:"ring,omitempty"`
	HeldBack *trainyardv1.HeldBack `json:"heldBack,omitempty"`
}

func whyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "why <cluster> <component>",
		Short:   "Why a cluster's component has its state: the latest and the policy that chose it, retraction, staleness",
		Example: `  kubectl trainyard why 9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c controller -n trainyard-system`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.why(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if g.output == "json" || g.output == "yaml" {
				return g.print(v, nil)
			}
			fmt.Fprintf(g.out(), "%s on cluster %s (namespace %s): %s\n", v.Component, v.Cluster, v.Namespace, v.State)
			for _, r := range v.Reasons {
				fmt.Fprintf(g.out(), "  - %s\n", r)
			}
			return nil
		},
	}
	g.addOutput(cmd, "text", "json", "yaml")
	return cmd
}

func (g *globals) why(ctx context.Context, cluster, component string) (*WhyView, error) {
	c, ns, err := g.clientIn("why")
	if err != nil {
		return nil, err
	}
	rep, err := getReport(ctx, c, ns, cluster)
	if err != nil {
		return nil, err
	}
	var reported *trainyardv1.ReportedComponent
	for i := range rep.Spec.Components {
		if rep.Spec.Components[i].Name == component {
			reported = &rep.Spec.Components[i]
		}
	}
	if reported == nil {
		return nil, fmt.Errorf("cluster %s reports no component %q", rep.Spec.ClusterID, component)
	}
	train := &trainyardv1.ReleaseTrain{}
	tname := trainyardv1.TrainName(reported.Name, reported.Train)
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: tname}, train); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		train = nil
	}
	var rels []trainyardv1.ComponentRelease
	if train != nil {
		all, err := g.releases(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, r := range all {
			if trainyardv1.TrainName(r.Spec.Component, r.Spec.Train) == tname {
				rels = append(rels, r)
			}
		}
	}
	return Why(rep, *reported, train, rels, g.age), nil
}

// Why explains the state of one reported component of rep. train is nil
// when there is no such train; rels are the train's releases.
func Why(rep *trainyardv1.ClusterReport, c trainyardv1.ReportedComponent, train *trainyardv1.ReleaseTrain, rels []trainyardv1.ComponentRelease, age func(*metav1.Time) string) *WhyView {
	v := &WhyView{
		Namespace: rep.Namespace, Cluster: rep.Spec.ClusterID, Component: c.Name, Train: c.Train,
		Running: c.Version, State: trainyardv1.StateUnknown, Stale: staleOf(rep), LastSeen: rep.Status.LastSeen,
	}
	say := func(format string, a ...any) { v.Reasons = append(v.Reasons, fmt.Sprintf(format, a...)) }
	tname := trainyardv1.TrainName(c.Name, c.Train)

	computed := false
	var status trainyardv1.ComponentStatus
	for _, s := range rep.Status.Components {
		if s.Name == c.Name {
			v.State, v.Latest, computed, status = s.State, s.GetLatest(), true, s
		}
	}
	if !computed || rep.Status.ObservedGeneration != rep.Generation {
		say("the controller has not yet computed the state of this report's latest spec (generation %d, status of %d): what follows is from the objects as they are now",
			rep.Generation, rep.Status.ObservedGeneration)
	}

	if train == nil {
		say("there is no ReleaseTrain %s: no release of %s was ever published on %s, so the state is Unknown", tname, c.Name, c.Train)
		v.Behind = BehindUnknown
		return staleness(v, rep, age)
	}
	policy, perr := ordering.PolicyOf(train.Spec)
	var running *trainyardv1.ComponentRelease
	eligible := 0
	for i := range rels {
		if policy.Eligible(candidate(rels[i])) {
			eligible++
		}
		if trainyardv1.CanonicalVersion(rels[i].Spec.Version) == trainyardv1.CanonicalVersion(c.Version) {
			running = &rels[i]
		}
	}
	if train.Status.Latest != nil {
		v.Latest = train.Status.Latest.Version
	}
	v.Behind = BehindOf(c.Version, v.Latest)

	// The latest, and the policy that chose it.
	view := &TrainView{Ordering: policy.Ordering, Prereleases: policy.Prereleases, VersionRange: train.Spec.VersionRange}
	switch {
	case perr != nil:
		say("%s's version range is invalid (%v): the train is Stalled and has no latest until it is fixed", tname, perr)
	case train.Status.Latest == nil:
		say("%s has no latest: none of its %d releases is eligible under its policy, %s", tname, len(rels), policyText(view))
	default:
		say("the latest on %s is %s, chosen by its policy, %s, among %d eligible of %d releases",
			tname, v.Latest, policyText(view), eligible, len(rels))
	}

	// The running release.
	switch {
	case running == nil:
		say("%s has no release %s: the cluster runs a version that was never published on this train, so the state is Unknown", tname, c.Version)
	case running.Spec.Retracted != nil:
		v.Retraction = running.Spec.Retracted.Reason
		since := ""
		if running.Spec.Retracted.Since != nil {
			since = " on " + day(running.Spec.Retracted.Since)
		}
		say("%s was retracted%s: %s", c.Version, since, running.Spec.Retracted.Reason)
	case v.Latest != "" && trainyardv1.CanonicalVersion(v.Latest) == trainyardv1.CanonicalVersion(c.Version):
		say("%s is the latest", c.Version)
	default:
		if why := ineligible(policy, *running); why != "" {
			say("%s cannot be latest: %s", c.Version, why)
		}
		switch v.Behind {
		case BehindNone:
			if v.Latest != "" {
				say("%s is not behind %s under semantic versioning, but the train's policy chose %s", c.Version, v.Latest, v.Latest)
			}
		case BehindUnknown:
			if v.Latest != "" {
				say("%s or %s is not a semantic version: how far behind it is cannot be said", c.Version, v.Latest)
			}
		default:
			say("%s is a %s version behind %s", c.Version, v.Behind, v.Latest)
		}
	}
	recommendation(v, status, say)
	return staleness(v, rep, age)
}

// recommendation says where the controller recommends going, how, and what
// is held back and why (docs/promotion.md, "Recommended upgrades").
func recommendation(v *WhyView, s trainyardv1.ComponentStatus, say func(string, ...any)) {
	v.Recommended, v.Path, v.Conditional = s.Recommended, s.GetPath(), s.GetConditional()
	if s.Recommended != "" {
		say("recommended: %s, by the path %s", s.Recommended, strings.Join(append([]string{v.Running}, s.GetPath()...), " → "))
	}
	v.Ring, v.HeldBack = s.Ring, s.GetHeldBack()
	if h := s.GetHeldBack(); h != nil {
		until := ""
		if h.Until != nil {
			until = " (until " + h.Until.UTC().Format(time.RFC3339) + ")"
		}
		say("held back from %s by its rollout ring %s: %s%s", h.Version, h.Ring, h.Reason, until)
	} else if s.Ring != "" {
		say("in rollout ring %s, which holds nothing back", s.Ring)
	}
	for _, cu := range s.GetConditional() {
		var risks []string
		for _, r := range cu.Risks {
			risks = append(risks, fmt.Sprintf("%s: %s (%s)", r.Name, r.Message, r.Reason))
		}
		say("held back: %s, for %s", cu.Version, strings.Join(risks, "; "))
	}
}

// ineligible says why the policy does not let a release be latest, or "".
func ineligible(p ordering.Policy, r trainyardv1.ComponentRelease) string {
	c := candidate(r)
	if p.Eligible(c) {
		return ""
	}
	sv, err := ordering.Parse(r.Spec.Version)
	switch {
	case r.Spec.Retracted != nil:
		return "it is retracted"
	case err != nil && p.Ordering == trainyardv1.OrderingSemver:
		return "it is not a semantic version, and the train orders by Semver"
	case err != nil:
		return "it is not a semantic version, and the train has a version range"
	case p.Prereleases == trainyardv1.PrereleasesExclude && sv.Prerelease() != "":
		return "it is a pre-release, and the train excludes pre-releases"
	default:
		return "it is outside the train's version range"
	}
}

// staleness adds the last check-in and the Stale condition's word.
func staleness(v *WhyView, rep *trainyardv1.ClusterReport, age func(*metav1.Time) string) *WhyView {
	last := "never checked in"
	if rep.Status.LastSeen != nil {
		last = fmt.Sprintf("last checked in %s ago (%s)", age(rep.Status.LastSeen), rep.Status.LastSeen.UTC().Format("2006-01-02T15:04:05Z"))
	}
	switch c := meta.FindStatusCondition(rep.Status.Conditions, trainyardv1.ConditionStale); {
	case c == nil && rep.Status.Summary != nil: // Stale is there once it has been True
		v.Reasons = append(v.Reasons, fmt.Sprintf("the cluster %s and has never been stale", last))
	case c == nil:
		v.Reasons = append(v.Reasons, fmt.Sprintf("the cluster %s; the controller has not yet said whether it is stale", last))
	case c.Status == metav1.ConditionTrue:
		v.Reasons = append(v.Reasons, fmt.Sprintf("the cluster %s and is Stale: %s; what it runs now may differ", last, c.Message))
	default:
		v.Reasons = append(v.Reasons, fmt.Sprintf("the cluster %s and is not stale: %s", last, c.Message))
	}
	return v
}

// getReport reads the report of a cluster ID (in any case).
func getReport(ctx context.Context, c client.Client, ns, id string) (*trainyardv1.ClusterReport, error) {
	rep := &trainyardv1.ClusterReport{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: trainyardv1.ClusterReportName(id)}, rep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no cluster %q in namespace %q", id, ns)
		}
		return nil, err
	}
	return rep, nil
}
