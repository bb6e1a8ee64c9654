package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/promotion"
)

// TrainView is `train -o json`: the train's policy and status, and each of
// its releases.
type TrainView struct {
	Name         string                       `json:"name"`
	Namespace    string                       `json:"namespace"`
	Component    string                       `json:"component"`
	Train        string                       `json:"train"`
	Ordering     trainyardv1.Ordering         `json:"ordering"`
	Prereleases  trainyardv1.PrereleasePolicy `json:"prereleases"`
	VersionRange string                       `json:"versionRange,omitempty"`
	Latest       *trainyardv1.ReleaseRef      `json:"latest,omitempty"`
	Previous     *trainyardv1.ReleaseRef      `json:"previous,omitempty"`
	History      []trainyardv1.ReleaseRef     `json:"history"`
	// releases, newest first under the train's ordering.
	Releases []TrainRelease             `json:"releases"`
	Adoption *trainyardv1.FleetAdoption `json:"adoption,omitempty"`
	// promotion is the train's promotion policy and its candidates' gates.
	Promotion *TrainPromotion `json:"promotion,omitempty"`
}

// TrainPromotion is a train's spec.promotion and status.promotion.
type TrainPromotion struct {
	Policy     trainyardv1.PromotionPolicy      `json:"policy"`
	Candidates []trainyardv1.PromotionCandidate `json:"candidates"`
}

// TrainRelease is one release of a train.
type TrainRelease struct {
	Name     string       `json:"name"`
	Version  string       `json:"version"`
	Released *metav1.Time `json:"released,omitempty"`
	Latest   bool         `json:"latest"`
	// eligible is whether the train's policy lets it be latest.
	Eligible   bool   `json:"eligible"`
	Retraction string `json:"retraction,omitempty"`
}

func trainCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train <component>[.<train>]",
		Short: "A train's latest, previous, history, releases and adoption (the train defaults to stable)",
		Example: `  kubectl trainyard train router.stable -n trainyard-system
  kubectl trainyard train controller -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			view, err := g.trainView(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output == "json" || g.output == "yaml" {
				return g.print(view, nil)
			}
			return g.describeTrain(view)
		},
	}
	g.addOutput(cmd, "text", "json", "yaml")
	return cmd
}

// trainName accepts <component>.<train> and <component> (stable).
func trainName(arg string) string {
	component, train, _ := strings.Cut(arg, ".")
	return trainyardv1.TrainName(component, train)
}

func (g *globals) trainView(ctx context.Context, arg string) (*TrainView, error) {
	c, ns, err := g.clientIn("train")
	if err != nil {
		return nil, err
	}
	t := &trainyardv1.ReleaseTrain{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: trainName(arg)}, t); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no ReleaseTrain %q in namespace %q (the controller creates one when a release of the train is published)", trainName(arg), ns)
		}
		return nil, err
	}
	all, err := g.releases(ctx, ns)
	if err != nil {
		return nil, err
	}
	var rels []trainyardv1.ComponentRelease
	for _, r := range all {
		if r.Spec.Component == t.Spec.Component && r.Spec.Train == t.Spec.Train {
			rels = append(rels, r)
		}
	}
	return newTrainView(t, rels), nil
}

func newTrainView(t *trainyardv1.ReleaseTrain, rels []trainyardv1.ComponentRelease) *TrainView {
	policy, _ := ordering.PolicyOf(t.Spec) // a bad range: the train's Stalled condition says so
	v := &TrainView{
		Name: t.Name, Namespace: t.Namespace, Component: t.Spec.Component, Train: t.Spec.Train,
		Ordering: policy.Ordering, Prereleases: policy.Prereleases, VersionRange: t.Spec.VersionRange,
		Latest: t.Status.Latest, Previous: t.Status.Previous, History: t.Status.History,
		Adoption: t.Status.Adoption, Releases: []TrainRelease{},
	}
	if v.History == nil {
		v.History = []trainyardv1.ReleaseRef{}
	}
	if p := t.Spec.Promotion; p != nil {
		v.Promotion = &TrainPromotion{Policy: *p, Candidates: []trainyardv1.PromotionCandidate{}}
		if t.Status.Promotion != nil {
			v.Promotion.Candidates = t.Status.Promotion.Candidates
		}
	}
	cands := make([]ordering.Candidate, len(rels))
	for i, r := range rels {
		cands[i] = candidate(r)
		tr := TrainRelease{Name: r.Name, Version: r.Spec.Version, Released: r.Spec.Released,
			Latest: r.Status.Latest, Eligible: policy.Eligible(cands[i])}
		if r.Spec.Retracted != nil {
			tr.Retraction = r.Spec.Retracted.Reason
		}
		v.Releases = append(v.Releases, tr)
	}
	// Newest first under the train's ordering, eligible or not.
	idx := make([]int, len(rels))
	for i := range idx {
		idx[i] = i
	}
	order := ordering.Policy{Ordering: policy.Ordering}
	slices.SortFunc(idx, func(a, b int) int { return order.Compare(cands[b], cands[a]) })
	sorted := make([]TrainRelease, len(idx))
	for i, j := range idx {
		sorted[i] = v.Releases[j]
	}
	v.Releases = sorted
	return v
}

func candidate(r trainyardv1.ComponentRelease) ordering.Candidate {
	var released int64
	if r.Spec.Released != nil {
		released = r.Spec.Released.UnixNano()
	}
	return ordering.NewCandidate(r.Name, r.Spec.Version, released, r.Spec.Retracted != nil)
}

// policyText says in words what a train's policy lets be latest.
func policyText(v *TrainView) string {
	s := string(v.Ordering)
	if v.Ordering == trainyardv1.OrderingSemver {
		s += " (highest semantic version)"
	} else {
		s += " (newest spec.released)"
	}
	if v.Prereleases == trainyardv1.PrereleasesExclude {
		s += ", pre-releases excluded"
	} else {
		s += ", pre-releases included"
	}
	if v.VersionRange != "" {
		s += fmt.Sprintf(", range %q", v.VersionRange)
	}
	return s
}

// barWidth is the longest adoption bar, in characters.
const barWidth = 40

func (g *globals) describeTrain(v *TrainView) error {
	w := tabwriter.NewWriter(g.out(), 0, 8, 2, ' ', 0)
	ref := func(r *trainyardv1.ReleaseRef) string {
		if r == nil {
			return "<none>"
		}
		return fmt.Sprintf("%s\treleased %s (%s ago)", r.Version, day(r.Released), g.age(r.Released))
	}
	retracted := 0
	for _, r := range v.Releases {
		if r.Retraction != "" {
			retracted++
		}
	}
	fmt.Fprintf(w, "Train:\t%s\tin namespace %s\n", v.Name, v.Namespace)
	fmt.Fprintf(w, "Policy:\t%s\n", policyText(v))
	fmt.Fprintf(w, "Latest:\t%s\n", ref(v.Latest))
	fmt.Fprintf(w, "Previous:\t%s\n", ref(v.Previous))
	fmt.Fprintf(w, "Releases:\t%d (%d retracted)\n", len(v.Releases), retracted)
	if err := w.Flush(); err != nil {
		return err
	}

	section(g.out(), "History (newest first)")
	w = tabwriter.NewWriter(g.out(), 0, 8, 2, ' ', 0)
	for _, h := range v.History {
		fmt.Fprintf(w, "  %s\t%s\n", h.Version, day(h.Released))
	}
	if len(v.History) == 0 {
		fmt.Fprintln(w, "  <none>")
	}
	if err := w.Flush(); err != nil {
		return err
	}

	section(g.out(), "Releases (newest first)")
	w = tabwriter.NewWriter(g.out(), 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "  VERSION\tRELEASED\tLATEST\tELIGIBLE\tRETRACTED")
	for _, r := range v.Releases {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", r.Version, day(r.Released), yes(r.Latest), yes(r.Eligible), cmp.Or(r.Retraction, "-"))
	}
	if err := w.Flush(); err != nil {
		return err
	}

	if err := g.printPromotion(v.Promotion); err != nil {
		return err
	}
	a := v.Adoption
	if a == nil || a.Clusters == 0 {
		section(g.out(), "Adoption: no cluster reports this train")
		return nil
	}
	section(g.out(), fmt.Sprintf("Adoption: %d of %d clusters up to date", a.UpToDate, a.Clusters))
	state := map[string]string{}
	for _, r := range v.Releases {
		switch {
		case r.Retraction != "":
			state[trainyardv1.CanonicalVersion(r.Version)] = "retracted"
		case r.Latest:
			state[trainyardv1.CanonicalVersion(r.Version)] = "latest"
		}
	}
	w = tabwriter.NewWriter(g.out(), 0, 8, 2, ' ', 0)
	bar := func(label string, n int32, note string) {
		width := int(int64(n) * barWidth / int64(a.Clusters))
		if width == 0 && n > 0 {
			width = 1
		}
		line := fmt.Sprintf("  %s\t%s\t%d", label, strings.Repeat("█", width), n)
		if note != "" {
			line += "\t" + note
		}
		fmt.Fprintln(w, line)
	}
	for _, ver := range a.Versions {
		bar(ver.Version, ver.Clusters, state[trainyardv1.CanonicalVersion(ver.Version)])
	}
	if a.OtherVersions > 0 {
		bar("(others)", a.OtherVersions, "")
	}
	return w.Flush()
}

func section(w io.Writer, title string) { fmt.Fprintf(w, "\n%s:\n", title) }

func day(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02")
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// printPromotion shows the promotion policy and each candidate's gates.
func (g *globals) printPromotion(p *TrainPromotion) error {
	if p == nil {
		return nil
	}
	var gates []string
	if d := p.Policy.Soak; d != nil {
		gates = append(gates, "soak "+d.Duration.String())
	}
	if a := p.Policy.Adoption; a != nil {
		gates = append(gates, fmt.Sprintf("adoption %d%% and %d clusters", a.MinPercent, a.MinClusters))
	}
	if p.Policy.HealthyClusters {
		gates = append(gates, "healthy clusters")
	}
	if w := p.Policy.Window; w != nil {
		gates = append(gates, "window "+promotion.Describe(w))
	}
	title := "Promotion from " + p.Policy.From
	if len(gates) > 0 {
		title += " (" + strings.Join(gates, ", ") + ")"
	}
	if p.Policy.Suspend {
		title += ", suspended"
	}
	section(g.out(), title)
	if len(p.Candidates) == 0 {
		fmt.Fprintln(g.out(), "  <no candidate: the source train has no latest release>")
		return nil
	}
	w := tabwriter.NewWriter(g.out(), 0, 8, 2, ' ', 0)
	for _, c := range p.Candidates {
		line := fmt.Sprintf("  %s\t%s\t%s", c.Version, c.Phase, c.Message)
		if c.NextEvaluation != nil {
			line += "; next evaluation " + c.NextEvaluation.UTC().Format(time.RFC3339)
		}
		fmt.Fprintln(w, line)
		for _, gs := range c.Gates {
			fmt.Fprintf(w, "    %s\t%s\t%s\n", gs.Name, gs.State, gs.Reason)
		}
	}
	return w.Flush()
}
