package plugin

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// FleetRow is one cluster in `fleet`, and in its -o json/yaml.
type FleetRow struct {
	Namespace  string            `json:"namespace"`
	Cluster    string            `json:"cluster"`
	Components int32             `json:"components"`
	UpToDate   int32             `json:"upToDate"`
	Updates    int32             `json:"updateAvailable"`
	Retracted  int32             `json:"retracted"`
	Unknown    int32             `json:"unknown"`
	LastSeen   *metav1.Time      `json:"lastSeen,omitempty"`
	FirstSeen  *metav1.Time      `json:"firstSeen,omitempty"`
	CheckIns   int64             `json:"checkIns"`
	Stale      string            `json:"stale"` // True, False, or Unknown before the controller has looked
	Properties map[string]string `json:"properties,omitempty"`
}

// FleetList is `fleet -o json`.
type FleetList struct {
	Items []FleetRow `json:"items"`
}

func fleetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "One row per cluster: its components by state, its last check-in, whether it is stale",
		Example: `  kubectl trainyard fleet -n trainyard-system
  kubectl trainyard fleet -A -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.output == "json" || g.output == "yaml" {
				var rows []FleetRow // a page's reports are dropped once they are rows
				err := g.reportPages(cmd.Context(), "", func(page []trainyardv1.ClusterReport) error {
					rows = append(rows, Fleet(page)...)
					return nil
				})
				if err != nil {
					return err
				}
				slices.SortFunc(rows, cmpFleetRows)
				return g.print(FleetList{Items: rows}, nil)
			}
			// A table prints as the pages come, in the API's order, which
			// is the rows' (cmpFleetRows).
			t := &table{namespaces: g.allNamespaces}
			fleetHeader(g, t)
			st := newStreamTable(g, t)
			err := g.reportPages(cmd.Context(), "", func(page []trainyardv1.ClusterReport) error {
				fleetRows(g, t, Fleet(page))
				return st.flush()
			})
			if err != nil {
				st.stop()
				return err
			}
			return st.finish()
		},
	}
	g.addOutput(cmd, "table", "wide", "json", "yaml")
	g.addChunkSize(cmd)
	return cmd
}

// reports lists the ClusterReports of the namespace (every namespace with
// -A), only those the field selector matches when it is not empty (the
// CRD's selectable status fields, trainyardv1.FieldUpdateAvailable..., let
// a question about a few clusters read only those).
func (g *globals) reports(ctx context.Context, selector string) ([]trainyardv1.ClusterReport, error) {
	reports, _, err := g.reportsAt(ctx, selector, "")
	return reports, err
}

// reportsAt is reports as they were at resourceVersion rv ("": now), and
// the resourceVersion they were read at.
func (g *globals) reportsAt(ctx context.Context, selector, rv string) ([]trainyardv1.ClusterReport, string, error) {
	_, ns, err := g.clientForList()
	if err != nil {
		return nil, "", err
	}
	if g.chunkSize < 0 {
		return nil, "", fmt.Errorf("--chunk-size must be 0 or more, not %d", g.chunkSize)
	}
	return listPipelined[trainyardv1.ClusterReportList](ctx, g.rest, "clusterreports", ns, selector, rv, g.chunkSize,
		func(l *trainyardv1.ClusterReportList) []trainyardv1.ClusterReport { return l.Items })
}

// reportPages hands the reports of the namespace (every namespace with -A)
// to each, a page at a time, in the API's order.
func (g *globals) reportPages(ctx context.Context, selector string, each func([]trainyardv1.ClusterReport) error) error {
	_, ns, err := g.clientForList()
	if err != nil {
		return err
	}
	if g.chunkSize < 0 {
		return fmt.Errorf("--chunk-size must be 0 or more, not %d", g.chunkSize)
	}
	_, err = listPages(ctx, g.rest, "clusterreports", ns, selector, "", g.chunkSize,
		func(l *trainyardv1.ClusterReportList) []trainyardv1.ClusterReport { return l.Items }, each)
	return err
}

// selectedReports lists the reports that match any of the field selectors,
// each once, all as they were at one resourceVersion (a report that moves
// from one selector's set to another's between two lists is neither missed
// nor listed twice). An API server that cannot select on the fields (a hub
// before Kubernetes 1.32, or a CRD from before them) answers 400: then it
// reads every report, and the caller's filter on their status decides.
func (g *globals) selectedReports(ctx context.Context, selectors ...string) ([]trainyardv1.ClusterReport, error) {
	var out []trainyardv1.ClusterReport
	seen := map[types.NamespacedName]bool{}
	rv := ""
	for i, sel := range selectors {
		reports, at, err := g.reportsAt(ctx, sel, rv)
		switch {
		case i == 0 && apierrors.IsBadRequest(err):
			return g.reports(ctx, "")
		case rv != "" && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)):
			// Compacted since the first list (a very slow reader): the
			// lists agree no longer, but none is missing its reports.
			reports, _, err = g.reportsAt(ctx, sel, "")
		}
		if err != nil {
			return nil, err
		}
		if i == 0 {
			rv = at
		}
		for _, r := range reports {
			if k := (types.NamespacedName{Namespace: r.Namespace, Name: r.Name}); !seen[k] {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Fleet is the rows of `fleet`, by namespace and cluster.
func Fleet(reports []trainyardv1.ClusterReport) []FleetRow {
	rows := make([]FleetRow, 0, len(reports))
	for i := range reports {
		r := &reports[i]
		row := FleetRow{
			Namespace: r.Namespace, Cluster: r.Spec.ClusterID,
			Components: int32(len(r.Spec.Components)),
			LastSeen:   r.Status.LastSeen, FirstSeen: r.Status.FirstSeen,
			CheckIns: r.Status.CheckIns, Stale: staleOf(r), Properties: r.Spec.Properties,
		}
		if s := r.Status.Summary; s != nil {
			row.UpToDate, row.Updates, row.Retracted, row.Unknown = s.UpToDate, s.UpdateAvailable, s.Retracted, s.Unknown
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, cmpFleetRows)
	return rows
}

// cmpFleetRows orders rows as the API server lists their reports: by
// namespace/name, the report's name being its cluster ID in lower case
// (trainyardv1.ClusterReportName), so that `fleet` can print page by page
// in order.
func cmpFleetRows(a, b FleetRow) int {
	if c := strings.Compare(a.Namespace+"/"+trainyardv1.ClusterReportName(a.Cluster), b.Namespace+"/"+trainyardv1.ClusterReportName(b.Cluster)); c != 0 {
		return c
	}
	return strings.Compare(a.Cluster, b.Cluster)
}

// staleOf is the report's Stale condition's status: "False" when a
// reconciled report has none (the cluster has never been stale), "Unknown"
// before the controller has reconciled it.
func staleOf(r *trainyardv1.ClusterReport) string {
	if c := meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionStale); c != nil {
		return string(c.Status)
	}
	if r.Status.Summary != nil {
		return string(metav1.ConditionFalse)
	}
	return "Unknown"
}

func fleetHeader(g *globals, t *table) {
	t.header("CLUSTER", "COMPONENTS", "UP-TO-DATE", "UPDATES", "RETRACTED", "LAST-SEEN", "STALE")
	if g.output == "wide" {
		t.header("UNKNOWN", "CHECK-INS", "FIRST-SEEN", "PROPERTIES")
	}
}

func fleetRows(g *globals, t *table, rows []FleetRow) {
	wide := g.output == "wide"
	for _, r := range rows {
		t.row(r.Namespace, r.Cluster, r.Components, r.UpToDate, r.Updates, r.Retracted, g.age(r.LastSeen), r.Stale)
		if wide {
			t.cells(r.Unknown, r.CheckIns, g.age(r.FirstSeen), properties(r.Properties))
		}
	}
}

// properties is a cluster's properties as sorted key=value pairs.
func properties(p map[string]string) string {
	if len(p) == 0 {
		return "<none>"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", k, p[k])
	}
	return b.String()
}

func cmpPair(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}
