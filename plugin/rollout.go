package plugin

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// RolloutView is `rollout -o json`: a train's rollout, ring by ring.
type RolloutView struct {
	Namespace string                     `json:"namespace"`
	Train     string                     `json:"train"`
	Rollout   *trainyardv1.RolloutStatus `json:"rollout"`
}

func rolloutCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout <component>[.<train>]",
		Short: "A train's rollout in rings: each ring's state, progress, and what it waits for (the train defaults to stable)",
		Example: `  kubectl trainyard rollout router -n trainyard-system
  kubectl trainyard rollout router.stable -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.rollout(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output == "json" || g.output == "yaml" {
				return g.print(v, nil)
			}
			return drawRollout(g, v)
		},
	}
	g.addOutput(cmd, "text", "json", "yaml")
	return cmd
}

func (g *globals) rollout(ctx context.Context, arg string) (*RolloutView, error) {
	c, ns, err := g.clientIn("rollout")
	if err != nil {
		return nil, err
	}
	name := trainName(arg)
	t := &trainyardv1.ReleaseTrain{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, t); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("there is no ReleaseTrain %s in namespace %s", name, ns)
	} else if err != nil {
		return nil, err
	}
	if t.Spec.Rollout == nil {
		return nil, fmt.Errorf("ReleaseTrain %s has no spec.rollout: every cluster is recommended the latest at once (docs/rollout.md)", name)
	}
	if t.Status.Rollout == nil {
		return nil, fmt.Errorf("ReleaseTrain %s has a rollout the controller has not evaluated yet", name)
	}
	return &RolloutView{Namespace: ns, Train: name, Rollout: t.Status.Rollout}, nil
}

// drawRollout draws each ring's progress: how many of its clusters run the
// rolling release, ready, and what the ring waits for.
func drawRollout(g *globals, v *RolloutView) error {
	st := v.Rollout
	fmt.Fprintf(g.out(), "%s: %s %s: %s\n", v.Train, st.Phase, st.Version, st.Message)
	w := tabwriter.NewWriter(g.out(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RING\tSTATE\tSINCE\tOPENED\tON-VERSION\tPROGRESS\tNEXT")
	for _, r := range st.Rings {
		since, next := "-", "-"
		if r.Since != nil {
			since = r.Since.UTC().Format(time.RFC3339)
		}
		if r.NextEvaluation != nil {
			next = r.NextEvaluation.UTC().Format(time.RFC3339)
		}
		opened := r.Version
		if opened == "" {
			opened = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.Name, r.State, since, opened, r.OnVersion, r.Clusters, bar(r.OnVersion, r.Clusters), next)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, r := range st.Rings {
		if r.Message != "" {
			fmt.Fprintf(g.out(), "  %s: %s\n", r.Name, r.Message)
		}
	}
	for _, h := range st.Halts {
		resumed := "still halted"
		if h.Resumed != nil {
			resumed = "resumed " + h.Resumed.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(g.out(), "halted %s (%s, %s): %s\n", h.At.UTC().Format(time.RFC3339), h.Reason, resumed, h.Message)
	}
	return nil
}

// bar is a 20-character progress bar of n of total.
func bar(n, total int32) string {
	const width = 20
	filled := 0
	if total > 0 {
		filled = int(int64(n) * width / int64(total))
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}
