package plugin

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// Behind is how far a running version is behind its train's latest.
type Behind string

const (
	BehindMajor      Behind = "major"
	BehindMinor      Behind = "minor"
	BehindPatch      Behind = "patch"
	BehindPrerelease Behind = "prerelease" // same major.minor.patch, an earlier pre-release
	BehindNone       Behind = "none"       // the latest, or newer than it
	BehindUnknown    Behind = "unknown"    // no latest, or a version that is not semantic
)

// rank orders Behind for --behind: at least minor is minor or major.
func (b Behind) rank() int {
	switch b {
	case BehindPrerelease:
		return 1
	case BehindPatch:
		return 2
	case BehindMinor:
		return 3
	case BehindMajor:
		return 4
	}
	return 0
}

// BehindOf compares a running version with the latest.
func BehindOf(running, latest string) Behind {
	r, rerr := ordering.Parse(running)
	l, lerr := ordering.Parse(latest)
	switch {
	case latest == "" || rerr != nil || lerr != nil:
		return BehindUnknown
	case r.Compare(l) >= 0:
		return BehindNone
	case r.Major() < l.Major():
		return BehindMajor
	case r.Minor() < l.Minor() && r.Major() == l.Major():
		return BehindMinor
	case r.Patch() < l.Patch() && r.Major() == l.Major() && r.Minor() == l.Minor():
		return BehindPatch
	default:
		return BehindPrerelease
	}
}

// OutdatedRow is one (cluster, component) that is not up to date.
type OutdatedRow struct {
	Namespace string `json:"namespace"`
	Cluster   string `json:"cluster"`
	Component string `json:"component"`
	Train     string `json:"train"`
	Running   string `json:"running"`
	// latest is the train's latest version, absent when it has none.
	Latest string `json:"latest,omitempty"`
	Behind Behind `json:"behind"`
	// latestReleased is when the latest was released.
	LatestReleased *metav1.Time `json:"latestReleased,omitempty"`
	// state is UpdateAvailable, Retracted or (with --include-unknown) Unknown.
	State trainyardv1.ComponentState `json:"state"`
	// retraction is why the running release was retracted.
	Retraction string       `json:"retraction,omitempty"`
	Stale      bool         `json:"stale"`
	LastSeen   *metav1.Time `json:"lastSeen,omitempty"`
}

// OutdatedList is `outdated -o json`: the rows, and what they add up to.
type OutdatedList struct {
	Items   []OutdatedRow  `json:"items"`
	Summary OutdatedTotals `json:"summary"`
}

// OutdatedTotals count the rows that were listed.
type OutdatedTotals struct {
	// clusters read (after --cluster): those labelled outdated (or unknown,
	// with --include-unknown) and any not labelled yet, not the whole fleet.
	Clusters int `json:"clusters"`
	// outdated rows, retracted ones included.
	Outdated int `json:"outdated"`
	// retracted rows: clusters running a retracted release.
	Retracted int `json:"retracted"`
	// exitCode is the command's exit code: 0, 1 or 2.
	ExitCode int `json:"exitCode"`
}

// OutdatedFilter narrows `outdated`; empty fields match everything.
type OutdatedFilter struct {
	Component, Train, Cluster string
	// Behind keeps rows at least this far behind.
	Behind Behind
	// Unknown also lists components whose state is Unknown (no train, or a
	// version the train does not know); they never change the exit code.
	Unknown bool
}

// Fleet data that outdated and why read besides the reports.
type catalog struct {
	trains map[string]*trainyardv1.ReleaseTrain // namespace/name
	// retractions maps namespace/train name/canonical version to a reason.
	retractions map[string]string
}

func (c *catalog) train(ns, component, train string) *trainyardv1.ReleaseTrain {
	return c.trains[ns+"/"+trainyardv1.TrainName(component, train)]
}

func (c *catalog) retraction(ns, component, train, version string) string {
	return c.retractions[ns+"/"+trainyardv1.TrainName(component, train)+"/"+trainyardv1.CanonicalVersion(version)]
}

// newCatalog indexes trains and releases.
func newCatalog(trains []trainyardv1.ReleaseTrain, releases []trainyardv1.ComponentRelease) *catalog {
	c := &catalog{trains: map[string]*trainyardv1.ReleaseTrain{}, retractions: map[string]string{}}
	for i := range trains {
		c.trains[trains[i].Namespace+"/"+trains[i].Name] = &trains[i]
	}
	for _, r := range releases {
		if r.Spec.Retracted != nil {
			c.retractions[r.Namespace+"/"+trainyardv1.TrainName(r.Spec.Component, r.Spec.Train)+"/"+trainyardv1.CanonicalVersion(r.Spec.Version)] = r.Spec.Retracted.Reason
		}
	}
	return c
}

// loadCatalog lists the trains and releases of the namespace (all with -A).
func (g *globals) loadCatalog(ctx context.Context) (*catalog, error) {
	_, ns, err := g.clientForList()
	if err != nil {
		return nil, err
	}
	trains, err := g.trains(ctx, ns)
	if err != nil {
		return nil, err
	}
	releases, err := g.releases(ctx, ns)
	if err != nil {
		return nil, err
	}
	return newCatalog(trains, releases), nil
}

func outdatedCommand(g *globals) *cobra.Command {
	var f OutdatedFilter
	var behind string
	cmd := &cobra.Command{
		Use:   "outdated",
		Short: "One row per (cluster, component) that is not up to date; exit 1 if any, 2 if a retracted release runs",
		Long: "outdated lists every component of every cluster that does not run its train's latest release, " +
			"as the controller last computed it (a ClusterReport's status).\n\n" +
			"Exit codes: 0 nothing listed is outdated, 1 something is, 2 some cluster runs a retracted release, 3 an error.",
		Example: `  kubectl trainyard outdated -n trainyard-system
  kubectl trainyard outdated -A --behind=minor --component router -o json`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			switch b := Behind(behind); b {
			case "", BehindMajor, BehindMinor, BehindPatch:
				f.Behind = b
				return nil
			default:
				return fmt.Errorf("--behind must be major, minor or patch, not %q", behind)
			}
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.connect(); err != nil {
				return err
			}
			// The trains and releases (a few hundred objects) are read while
			// the reports stream in.
			var cat *catalog
			catErr := make(chan error, 1)
			go func() {
				var err error
				cat, err = g.loadCatalog(cmd.Context())
				catErr <- err
			}()
			reports, err := g.outdatedReports(cmd.Context(), f.Unknown)
			if cerr := <-catErr; err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			list := Outdated(reports, cat, f)
			if err := g.print(list, func(t *table) { outdatedTable(g, t, list.Items) }); err != nil {
				return err
			}
			if list.Summary.ExitCode != ExitOK {
				return exitCode(list.Summary.ExitCode)
			}
			return nil
		},
	}
	g.addOutput(cmd, "table", "wide", "json", "yaml")
	g.addChunkSize(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.Component, "component", "", "Only this component.")
	fl.StringVar(&f.Train, "train", "", "Only this train.")
	fl.StringVar(&f.Cluster, "cluster", "", "Only this cluster (its ID).")
	fl.StringVar(&behind, "behind", "", "Only components at least this far behind: major, minor or patch.")
	fl.BoolVar(&f.Unknown, "include-unknown", false, "Also list components in state Unknown (no such train, or a version it does not know); they do not change the exit code.")
	return cmd
}

// outdatedReports lists only the reports whose status summary counts an
// outdated component (and, with unknown, an unknown one), by field
// selectors (trainyardv1.FieldUpdateAvailable...) in lists that do not
// overlap, at one resourceVersion (selectedReports): a fleet that is mostly
// current sends only its few outdated reports, not the fleet. A report the
// controller has not reconciled yet has no summary, which the first
// selector matches: it is read, and its status says what it is, so no
// outdated report is missed.
func (g *globals) outdatedReports(ctx context.Context, unknown bool) ([]trainyardv1.ClusterReport, error) {
	selectors := []string{
		trainyardv1.FieldUpdateAvailable + "!=0",
		trainyardv1.FieldUpdateAvailable + "=0," + trainyardv1.FieldRetracted + "!=0",
	}
	if unknown {
		selectors = append(selectors, trainyardv1.FieldUpdateAvailable+"=0,"+trainyardv1.FieldRetracted+"=0,"+trainyardv1.FieldUnknown+"!=0")
	}
	return g.selectedReports(ctx, selectors...)
}

// Outdated is the rows of `outdated`, by namespace, cluster and component,
// and the exit code they mean.
func Outdated(reports []trainyardv1.ClusterReport, cat *catalog, f OutdatedFilter) OutdatedList {
	list := OutdatedList{Items: []OutdatedRow{}}
	for i := range reports {
		r := &reports[i]
		if f.Cluster != "" && trainyardv1.ClusterReportName(f.Cluster) != r.Name {
			continue
		}
		list.Summary.Clusters++
		stale := staleOf(r) == "True"
		for _, c := range r.Status.Components {
			train := r.TrainOf(c.Name)
			switch {
			case c.State == trainyardv1.StateUpToDate,
				c.State == trainyardv1.StateUnknown && !f.Unknown,
				f.Component != "" && c.Name != f.Component,
				f.Train != "" && train != f.Train:
				continue
			}
			row := OutdatedRow{
				Namespace: r.Namespace, Cluster: r.Spec.ClusterID, Component: c.Name, Train: train,
				Running: c.Installed, Latest: c.GetLatest(), Behind: BehindOf(c.Installed, c.GetLatest()),
				State: c.State, Stale: stale, LastSeen: r.Status.LastSeen,
			}
			if f.Behind != "" && row.Behind.rank() < f.Behind.rank() {
				continue
			}
			if t := cat.train(r.Namespace, c.Name, train); t != nil && t.Status.Latest != nil {
				row.LatestReleased = t.Status.Latest.Released
			}
			if c.State == trainyardv1.StateRetracted {
				row.Retraction = cat.retraction(r.Namespace, c.Name, train, c.Installed)
			}
			list.Items = append(list.Items, row)
		}
	}
	slices.SortFunc(list.Items, func(a, b OutdatedRow) int {
		if c := cmpPair(a.Namespace, b.Namespace, a.Cluster, b.Cluster); c != 0 {
			return c
		}
		return cmpPair(a.Component, b.Component, a.Train, b.Train)
	})
	for _, row := range list.Items {
		switch row.State {
		case trainyardv1.StateRetracted:
			list.Summary.Outdated++
			list.Summary.Retracted++
		case trainyardv1.StateUpdateAvailable:
			list.Summary.Outdated++
		}
	}
	switch {
	case list.Summary.Retracted > 0:
		list.Summary.ExitCode = ExitRetracted
	case list.Summary.Outdated > 0:
		list.Summary.ExitCode = ExitOutdated
	}
	return list
}

func outdatedTable(g *globals, t *table, rows []OutdatedRow) {
	wide := g.output == "wide"
	t.header("CLUSTER", "COMPONENT", "TRAIN", "RUNNING", "LATEST", "BEHIND", "LATEST-AGE", "STATE")
	t.empty = "Nothing is outdated."
	if wide {
		t.header("STALE", "LAST-SEEN", "RETRACTION")
	}
	for _, r := range rows {
		age := "-"
		if r.LatestReleased != nil {
			age = g.age(r.LatestReleased)
		}
		t.row(r.Namespace, r.Cluster, r.Component, r.Train, r.Running, r.Latest, r.Behind, age, r.State)
		if wide {
			t.cells(r.Stale, g.age(r.LastSeen), r.Retraction)
		}
	}
}
