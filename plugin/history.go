package plugin

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// HistoryView is `history -o json`: a cluster's components, each with what
// it runs since when and its last version changes (oldest first).
type HistoryView struct {
	Namespace  string             `json:"namespace"`
	Cluster    string             `json:"cluster"`
	Components []ComponentHistory `json:"components"`
}

// ComponentHistory is one component's timeline on a cluster.
type ComponentHistory struct {
	Component string                      `json:"component"`
	Train     string                      `json:"train"`
	Running   string                      `json:"running"`
	Since     *metav1.Time                `json:"since,omitempty"`
	Changes   []trainyardv1.VersionChange `json:"changes"`
}

func historyCommand(g *globals) *cobra.Command {
	var component string
	cmd := &cobra.Command{
		Use:   "history <cluster>",
		Short: "A cluster's version changes per component (the last 20 of each), and since when it runs what it runs",
		Example: `  kubectl trainyard history 9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c -n trainyard-system
  kubectl trainyard history edge-1 --component router -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.history(cmd.Context(), args[0], component)
			if err != nil {
				return err
			}
			if g.output == "json" || g.output == "yaml" {
				return g.print(v, nil)
			}
			w := tabwriter.NewWriter(g.out(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "COMPONENT\tTRAIN\tFROM\tTO\tAT")
			for _, c := range v.Components {
				for _, ch := range c.Changes {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Component, c.Train, ch.From, ch.To, ch.At.UTC().Format(time.RFC3339))
				}
				since := "-"
				if c.Since != nil {
					since = c.Since.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t\t%s\t%s (running since)\n", c.Component, c.Train, c.Running, since)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&component, "component", "", "Only this component.")
	g.addOutput(cmd, "text", "json", "yaml")
	return cmd
}

func (g *globals) history(ctx context.Context, cluster, component string) (*HistoryView, error) {
	c, ns, err := g.clientIn("history")
	if err != nil {
		return nil, err
	}
	rep, err := getReport(ctx, c, ns, cluster)
	if err != nil {
		return nil, err
	}
	v := History(rep, component)
	if component != "" && len(v.Components) == 0 {
		return nil, fmt.Errorf("cluster %s reports no component %q", rep.Spec.ClusterID, component)
	}
	return v, nil
}

// History is the timeline of rep's components (only component's, if
// named), from its status: what the controller recorded.
func History(rep *trainyardv1.ClusterReport, component string) *HistoryView {
	v := &HistoryView{Namespace: rep.Namespace, Cluster: rep.Spec.ClusterID, Components: []ComponentHistory{}}
	for _, s := range rep.Status.Components {
		if component != "" && s.Name != component {
			continue
		}
		changes := s.GetHistory()
		if changes == nil {
			changes = []trainyardv1.VersionChange{}
		}
		v.Components = append(v.Components, ComponentHistory{Component: s.Name, Train: rep.TrainOf(s.Name), Running: s.Installed,
			Since: s.SinceOr(rep.Status.FirstSeen), Changes: changes})
	}
	return v
}
