package exposure_test

import (
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/exposure"
)

// issue30 is the issue's fixture: introduced 1.0.0, fixed 1.2.1.
func issue30() *trainyardv1.AdvisorySpec {
	return &trainyardv1.AdvisorySpec{ID: "GHSA-xxxx-yyyy-zzzz", Aliases: []string{"CVE-2026-1"},
		Affected: []trainyardv1.AffectedComponent{{Component: "app",
			Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER", Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}}}}}}
}

func report(id, train, version string, more ...trainyardv1.ReportedComponent) trainyardv1.ClusterReport {
	return trainyardv1.ClusterReport{Spec: trainyardv1.ClusterReportSpec{ClusterID: id,
		Components: append([]trainyardv1.ReportedComponent{{Name: "app", Train: train, Version: version}}, more...)}}
}

// The issue's scenario: five clusters on 1.0.0, 1.1.0, 1.2.0, 1.2.1 and
// 1.3.0; exactly the three below 1.2.1 are exposed; an acceptance takes one
// out; withdrawn clears everything.
func TestTheIssuesScenario(t *testing.T) {
	var reports []trainyardv1.ClusterReport
	for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
		reports = append(reports, report(fmt.Sprintf("c%d", i), "stable", v))
	}
	s := issue30()
	e, found := exposure.Of(s, reports, nil)
	if e.Clusters != 3 || !slices.Equal(e.ClusterIDs, []string{"c0", "c1", "c2"}) ||
		!slices.Equal(e.ByTrain, []trainyardv1.TrainExposure{{Train: "stable", Clusters: 3}}) || len(found) != 3 {
		t.Fatalf("exposure %+v, found %+v", e, found)
	}

	accepted := func(r *trainyardv1.ClusterReport, component string) bool {
		return r.Spec.ClusterID == "c1" && component == "app"
	}
	if e, _ := exposure.Of(s, reports, accepted); e.Clusters != 2 || !slices.Equal(e.ClusterIDs, []string{"c0", "c2"}) {
		t.Fatalf("with c1 accepted: %+v", e)
	}

	s.Withdrawn = &metav1.Time{}
	if e, found := exposure.Of(s, reports, nil); e.Clusters != 0 || len(e.ByTrain) != 0 || len(found) != 0 {
		t.Fatalf("withdrawn: %+v, %+v", e, found)
	}
}

func TestTrainsComponentsAndCounting(t *testing.T) {
	s := issue30()
	s.Affected[0].Trains = []string{"stable"}
	s.Affected = append(s.Affected, trainyardv1.AffectedComponent{Component: "sidecar", Versions: []string{"0.9.0"}})
	reports := []trainyardv1.ClusterReport{
		report("b", "beta", "1.1.0"), // a train the advisory does not name
		report("a", "stable", "1.1.0", trainyardv1.ReportedComponent{Name: "sidecar", Train: "edge", Version: "v0.9.0"}),
		report("c", "", "1.0.0"),        // the default train is stable
		report("d", "stable", "latest"), // not a version anyone can order
	}
	e, found := exposure.Of(s, reports, nil)
	if e.Clusters != 2 || !slices.Equal(e.ClusterIDs, []string{"a", "c"}) {
		t.Fatalf("exposure %+v", e)
	}
	if !slices.Equal(e.ByTrain, []trainyardv1.TrainExposure{{Train: "edge", Clusters: 1}, {Train: "stable", Clusters: 2}}) {
		t.Fatalf("by train %+v", e.ByTrain)
	}
	if len(found) != 3 || found[0] != (exposure.Exposed{ClusterID: "a", Component: "app", Train: "stable", Version: "1.1.0"}) ||
		found[1] != (exposure.Exposed{ClusterID: "a", Component: "sidecar", Train: "edge", Version: "v0.9.0"}) {
		t.Fatalf("found %+v", found)
	}
}

func TestClusterIDsAreBounded(t *testing.T) {
	var reports []trainyardv1.ClusterReport
	for i := range 120 {
		reports = append(reports, report(fmt.Sprintf("c%03d", i), "stable", "1.1.0"))
	}
	e, found := exposure.Of(issue30(), reports, nil)
	if e.Clusters != 120 || len(e.ClusterIDs) != exposure.MaxClusterIDs || e.ClusterIDs[0] != "c000" || len(found) != 120 {
		t.Fatalf("%d clusters, %d IDs listed (first %s), %d found", e.Clusters, len(e.ClusterIDs), e.ClusterIDs[0], len(found))
	}
}

func TestNames(t *testing.T) {
	if got := exposure.Names(issue30()); !slices.Equal(got, []string{"GHSA-xxxx-yyyy-zzzz", "CVE-2026-1"}) {
		t.Fatalf("%v", got)
	}
}
