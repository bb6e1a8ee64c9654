// Package exposure decides which clusters an Advisory exposes: those that
// report running an affected version of one of its components, on a train
// it applies to, with no risk acceptance in force for it. It is pure: the
// exposure controller gathers the reports and acceptances (issue 30).
package exposure

import (
	"cmp"
	"slices"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/osv"
)

// MaxClusterIDs is how many exposed cluster IDs status.exposed lists.
const MaxClusterIDs = 50

// Affects tells whether the advisory applies to version of component on
// train. A withdrawn advisory applies to nothing; a version trainyard
// cannot order is not affected by a range (the webhook refuses ranges over
// such versions, so only a cluster's odd version gets here).
func Affects(s *trainyardv1.AdvisorySpec, component, train, version string) bool {
	if s.Withdrawn != nil {
		return false
	}
	for i := range s.Affected {
		c := &s.Affected[i]
		if c.Component != component || (len(c.Trains) > 0 && !slices.Contains(c.Trains, train)) {
			continue
		}
		if ok, _ := osv.AffectedOf(c).Affects(version); ok {
			return true
		}
	}
	return false
}

// Exposed is one affected component a cluster runs.
type Exposed struct {
	ClusterID string
	Component string
	Train     string
	Version   string
}

// Of computes the advisory's exposure over reports: the status it shows
// (clusters counted once, per train, the first MaxClusterIDs IDs in order)
// and every exposed component, sorted by cluster ID. accepted(report,
// component) says whether a risk acceptance in force covers the advisory
// for that component of that cluster (the team's "not affected").
func Of(s *trainyardv1.AdvisorySpec, reports []trainyardv1.ClusterReport, accepted func(*trainyardv1.ClusterReport, string) bool) (trainyardv1.Exposure, []Exposed) {
	var found []Exposed
	for i := range reports {
		rep := &reports[i]
		for _, c := range rep.Spec.Components {
			train := cmp.Or(c.Train, "stable")
			if Affects(s, c.Name, train, c.Version) && (accepted == nil || !accepted(rep, c.Name)) {
				found = append(found, Exposed{ClusterID: rep.Spec.ClusterID, Component: c.Name, Train: train, Version: c.Version})
			}
		}
	}
	slices.SortFunc(found, func(a, b Exposed) int {
		return cmp.Or(cmp.Compare(a.ClusterID, b.ClusterID), cmp.Compare(a.Component, b.Component))
	})
	var e trainyardv1.Exposure
	perTrain := map[string]map[string]bool{}
	for i, x := range found {
		if i == 0 || found[i-1].ClusterID != x.ClusterID {
			e.Clusters++
			if len(e.ClusterIDs) < MaxClusterIDs {
				e.ClusterIDs = append(e.ClusterIDs, x.ClusterID)
			}
		}
		if perTrain[x.Train] == nil {
			perTrain[x.Train] = map[string]bool{}
		}
		perTrain[x.Train][x.ClusterID] = true
	}
	for train, ids := range perTrain {
		e.ByTrain = append(e.ByTrain, trainyardv1.TrainExposure{Train: train, Clusters: int32(len(ids))})
	}
	slices.SortFunc(e.ByTrain, func(a, b trainyardv1.TrainExposure) int { return cmp.Compare(a.Train, b.Train) })
	return e, found
}

// Names is how a risk acceptance names the advisory: its id and aliases.
func Names(s *trainyardv1.AdvisorySpec) []string {
	return append([]string{s.ID}, s.Aliases...)
}
