package plugin

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/osv"
)

// AdvisoryRow is one row of `advisories`.
type AdvisoryRow struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	ID        string   `json:"id"`
	Aliases   []string `json:"aliases,omitempty"`
	Summary   string   `json:"summary,omitempty"`
	// severity is the CVSS rating (Critical, High, Medium, Low, None) or
	// Unknown; score its base score.
	Severity string `json:"severity"`
	Score    string `json:"score,omitempty"`
	// exposed is how many clusters run an affected version (the
	// controller's count).
	Exposed int32 `json:"exposed"`
	// fixed are the versions the advisory's ranges name as fixed.
	Fixed     []string     `json:"fixed"`
	Expedite  bool         `json:"expedite"`
	Withdrawn *metav1.Time `json:"withdrawn,omitempty"`
}

// AdvisoryList is `advisories -o json`.
type AdvisoryList struct {
	Items []AdvisoryRow `json:"items"`
}

// ExposedView is `exposed -o json`: the advisory, the components its
// clusters run that it affects, and the exit code they mean.
type ExposedView struct {
	Advisory AdvisoryRow  `json:"advisory"`
	Items    []ExposedRow `json:"items"`
	// exitCode is 1 when any cluster is exposed, else 0.
	ExitCode int `json:"exitCode"`
}

// ExposedRow is one exposed component of one cluster.
type ExposedRow struct {
	Cluster   string `json:"cluster"`
	Component string `json:"component"`
	Train     string `json:"train"`
	Running   string `json:"running"`
	// recommended is the controller's recommendation: the nearest fixed
	// version the cluster can reach without an affected hop ("" when none
	// can be reached), and path the hops to it.
	Recommended string       `json:"recommended,omitempty"`
	Path        []string     `json:"path,omitempty"`
	Since       *metav1.Time `json:"since,omitempty"`
	Stale       bool         `json:"stale"`
}

func advisoryRow(a *trainyardv1.Advisory) AdvisoryRow {
	row := AdvisoryRow{Namespace: a.Namespace, Name: a.Name, ID: a.Spec.ID, Aliases: a.Spec.Aliases, Summary: a.Spec.Summary,
		Fixed: osv.FixedVersions(&a.Spec), Expedite: a.Spec.Expedite, Withdrawn: a.Spec.Withdrawn}
	if row.Fixed == nil {
		row.Fixed = []string{}
	}
	score, rating, ok := osv.SeverityOf(&a.Spec)
	row.Severity = rating
	if ok {
		row.Score = fmt.Sprintf("%.1f", score)
	}
	if a.Status.Exposed != nil {
		row.Exposed = a.Status.Exposed.Clusters
	}
	return row
}

func advisoriesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "advisories",
		Short: "List Advisories: severity, how many clusters are exposed, the fixed versions",
		Long: "advisories lists the Advisories of the namespace (every namespace with -A), most exposed first: " +
			"the severity (the CVSS rating of its score), how many clusters run an affected version (as the " +
			"controller last counted them, less those a risk acceptance covers) and the versions that fix it.",
		Example: `  kubectl trainyard advisories -n fleet
  kubectl trainyard advisories -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := g.clientForList()
			if err != nil {
				return err
			}
			var list trainyardv1.AdvisoryList
			if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
				return err
			}
			out := AdvisoryList{Items: make([]AdvisoryRow, 0, len(list.Items))}
			for i := range list.Items {
				out.Items = append(out.Items, advisoryRow(&list.Items[i]))
			}
			slices.SortFunc(out.Items, func(a, b AdvisoryRow) int {
				return cmp.Or(cmp.Compare(b.Exposed, a.Exposed), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.ID, b.ID))
			})
			return g.print(out, func(t *table) {
				t.header("ID", "SEVERITY", "EXPOSED", "FIXED", "EXPEDITE", "SUMMARY")
				t.empty = emptyIn(ns, "No advisories found")
				for _, r := range out.Items {
					sev := r.Severity
					if r.Score != "" {
						sev += " " + r.Score
					}
					exposed := fmt.Sprint(r.Exposed)
					if r.Withdrawn != nil {
						exposed = "withdrawn"
					}
					t.row(r.Namespace, r.ID, sev, exposed, strings.Join(r.Fixed, ","), r.Expedite, clipSummary(r.Summary))
				}
			})
		},
	}
	g.addOutput(cmd, "table", "json", "yaml")
	return cmd
}

func exposedCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exposed <advisory>",
		Short: "The clusters an Advisory exposes, what they run and their recommended fix; exit 1 if any",
		Long: "exposed lists, for one Advisory (its name, ID or an alias), every cluster component that runs a " +
			"version it affects, with the controller's recommendation: the nearest fixed version the cluster can " +
			"reach without an affected hop, and the path there. Clusters a risk acceptance in force covers are " +
			"not listed.\n\nExit codes: 0 no cluster is exposed, 1 some cluster is, 3 an error.",
		Example: `  kubectl trainyard exposed GHSA-h62f-wm92-2cmw -n fleet
  kubectl trainyard exposed cve-2026-1234 -n fleet -o json || echo "exposed clusters"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.clientIn("exposed")
			if err != nil {
				return err
			}
			adv, err := findAdvisory(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			// Only the reports an advisory applies to (their status
			// summary's exposed count, omitted while 0); Exposed picks
			// this advisory's. A report not reconciled yet has neither a
			// summary nor the status components Exposed reads.
			reports, err := g.selectedReports(cmd.Context(), trainyardv1.FieldExposed+"!=0,"+trainyardv1.FieldExposed+"!=")
			if err != nil {
				return err
			}
			v := Exposed(adv, reports)
			if err := g.print(v, func(t *table) {
				t.header("CLUSTER", "COMPONENT", "TRAIN", "RUNNING", "RECOMMENDED", "PATH", "STALE")
				t.empty = fmt.Sprintf("No cluster is exposed to %s.", adv.Spec.ID)
				for _, r := range v.Items {
					rec := r.Recommended
					if rec == "" {
						rec = "none reachable"
					}
					t.row(ns, r.Cluster, r.Component, r.Train, r.Running, rec, strings.Join(r.Path, " → "), r.Stale)
				}
			}); err != nil {
				return err
			}
			if v.ExitCode != ExitOK {
				return exitCode(v.ExitCode)
			}
			return nil
		},
	}
	g.addOutput(cmd, "table", "json", "yaml")
	g.addChunkSize(cmd)
	return cmd
}

// Exposed is `exposed`'s answer: the report components whose status lists
// the advisory (the controller's decision, acceptances included), by
// cluster and component.
func Exposed(adv *trainyardv1.Advisory, reports []trainyardv1.ClusterReport) ExposedView {
	v := ExposedView{Advisory: advisoryRow(adv), Items: []ExposedRow{}}
	for i := range reports {
		r := &reports[i]
		stale := staleOf(r) == "True"
		for _, c := range r.Status.Components {
			j := slices.IndexFunc(c.GetAdvisories(), func(a trainyardv1.ComponentAdvisory) bool { return a.ID == adv.Spec.ID })
			if j < 0 {
				continue
			}
			since := c.GetAdvisories()[j].Since
			v.Items = append(v.Items, ExposedRow{Cluster: r.Spec.ClusterID, Component: c.Name, Train: r.TrainOf(c.Name), Running: c.Installed,
				Recommended: c.Recommended, Path: c.GetPath(), Since: &since, Stale: stale})
		}
	}
	slices.SortFunc(v.Items, func(a, b ExposedRow) int {
		return cmpPair(a.Cluster, b.Cluster, a.Component, b.Component)
	})
	if len(v.Items) > 0 {
		v.ExitCode = ExitOutdated
	}
	return v
}

// findAdvisory finds an advisory by name, or else by ID or alias (in any
// case).
func findAdvisory(ctx context.Context, c client.Client, ns, arg string) (*trainyardv1.Advisory, error) {
	adv := &trainyardv1.Advisory{}
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: arg}, adv)
	if err == nil {
		return adv, nil
	}
	if !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
		return nil, err
	}
	var list trainyardv1.AdvisoryList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	for i := range list.Items {
		a := &list.Items[i]
		if strings.EqualFold(a.Spec.ID, arg) || slices.ContainsFunc(a.Spec.Aliases, func(s string) bool { return strings.EqualFold(s, arg) }) {
			return a, nil
		}
	}
	return nil, fmt.Errorf("no advisory %q in namespace %s (by name, ID or alias)", arg, ns)
}

// clipSummary keeps a table's summary column to one short line.
func clipSummary(s string) string {
	const n = 60
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// emptyIn is what an empty list says, in kubectl's words.
func emptyIn(ns, what string) string {
	if ns == "" {
		return what + "."
	}
	return fmt.Sprintf("%s in %s namespace.", what, ns)
}
