package plugin

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// DiffView is `diff -o json`: the components two clusters run differently.
type DiffView struct {
	Namespace   string          `json:"namespace"`
	A           string          `json:"a"`
	B           string          `json:"b"`
	Differences []DiffComponent `json:"differences"`
}

// DiffComponent is one component as each cluster runs it; a side is absent
// when that cluster does not report the component.
type DiffComponent struct {
	Component string    `json:"component"`
	A         *DiffSide `json:"a,omitempty"`
	B         *DiffSide `json:"b,omitempty"`
}

// DiffSide is a component on one cluster.
type DiffSide struct {
	Train   string                     `json:"train"`
	Version string                     `json:"version"`
	State   trainyardv1.ComponentState `json:"state,omitempty"`
}

func diffCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "diff <clusterA> <clusterB>",
		Short:   "The components two clusters run differently (train or version); exit 1 when there are any",
		Example: `  kubectl trainyard diff staging-eu prod-eu -n trainyard-system`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.diff(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if err := g.print(v, func(t *table) { diffTable(t, v) }); err != nil {
				return err
			}
			if len(v.Differences) > 0 {
				return exitCode(ExitOutdated)
			}
			return nil
		},
	}
	g.addOutput(cmd, "table", "json", "yaml")
	return cmd
}

func (g *globals) diff(ctx context.Context, a, b string) (*DiffView, error) {
	c, ns, err := g.clientIn("diff")
	if err != nil {
		return nil, err
	}
	ra, err := getReport(ctx, c, ns, a)
	if err != nil {
		return nil, err
	}
	rb, err := getReport(ctx, c, ns, b)
	if err != nil {
		return nil, err
	}
	return Diff(ra, rb), nil
}

// Diff compares what two clusters report, by component name.
func Diff(a, b *trainyardv1.ClusterReport) *DiffView {
	v := &DiffView{Namespace: a.Namespace, A: a.Spec.ClusterID, B: b.Spec.ClusterID, Differences: []DiffComponent{}}
	sides := func(r *trainyardv1.ClusterReport) map[string]*DiffSide {
		m := map[string]*DiffSide{}
		for _, c := range r.Spec.Components {
			m[c.Name] = &DiffSide{Train: c.Train, Version: c.Version}
		}
		for _, s := range r.Status.Components {
			if d := m[s.Name]; d != nil {
				d.State = s.State
			}
		}
		return m
	}
	sa, sb := sides(a), sides(b)
	var names []string
	for n := range sa {
		names = append(names, n)
	}
	for n := range sb {
		if sa[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		x, y := sa[n], sb[n]
		if x != nil && y != nil && x.Train == y.Train && trainyardv1.CanonicalVersion(x.Version) == trainyardv1.CanonicalVersion(y.Version) {
			continue
		}
		v.Differences = append(v.Differences, DiffComponent{Component: n, A: x, B: y})
	}
	return v
}

func diffTable(t *table, v *DiffView) {
	t.header("COMPONENT", v.A, v.B)
	t.empty = fmt.Sprintf("%s and %s run the same components on the same trains.", v.A, v.B)
	cell := func(s *DiffSide) string {
		if s == nil {
			return "<absent>"
		}
		if s.State == "" {
			return fmt.Sprintf("%s (%s)", s.Version, s.Train)
		}
		return fmt.Sprintf("%s (%s, %s)", s.Version, s.Train, s.State)
	}
	for _, d := range v.Differences {
		t.row(v.Namespace, d.Component, cell(d.A), cell(d.B))
	}
}
