package bridge

import (
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// SlimReport drops from a report on its way into the cache of a bridge
// that runs apart (`trainyard bridge`) what the bridge never reads: labels,
// conditions, the summary, and of each component's status all but what the
// answers use (clusterOf, recommendationsOf). A component that is up to
// date, with no recommendation and no rollout ring, has nothing to offer:
// its entry is dropped too, and recommendationsOf tells it from the spec.
// At 100,000 reports the status's components were most of the bridge's
// heap (issue 32), and in a fleet most components are up to date.
//
// The check-in store writes reports with merge patches computed between
// two copies of a cached object, so what is dropped here is never written
// back (a field absent from both is not in the patch).
func SlimReport(r *trainyardv1.ClusterReport) {
	r.Labels = nil
	r.Status.Conditions = nil
	r.Status.Summary = nil
	n := 0
	for i := range r.Status.Components {
		if !plain(&r.Status.Components[i]) {
			n++
		}
	}
	// Sized exactly: the bridge takes in every status update of the fleet
	// (50,000 after a release round at 100,000 clusters), and what it
	// allocates then is what its pages' tail pays for (issue 32).
	var kept []trainyardv1.ComponentStatus
	if n > 0 {
		kept = make([]trainyardv1.ComponentStatus, 0, n)
	}
	for _, c := range r.Status.Components {
		if plain(&c) {
			continue
		}
		kept = append(kept, trainyardv1.ComponentStatus{Name: c.Name, Installed: c.Installed, Latest: c.Latest,
			State: c.State, Recommended: c.Recommended, Ring: c.Ring})
	}
	r.Status.Components = kept
}

// plain is a component's status that offers nothing: the train's latest
// runs, and no rollout ring holds it.
func plain(c *trainyardv1.ComponentStatus) bool {
	return c.State == trainyardv1.StateUpToDate && c.Recommended == "" && c.Ring == ""
}

// recommendationsOf are a report's component states by train, nil when the
// status was computed for an earlier spec. A spec component without a
// status entry in a current status is an up-to-date one (SlimReport).
func recommendationsOf(rep *trainyardv1.ClusterReport) map[string]trainyardv1.ComponentStatus {
	if !rep.StatusCurrent() {
		return nil // computed for an earlier spec (another train, perhaps)
	}
	out := make(map[string]trainyardv1.ComponentStatus, len(rep.Spec.Components))
	for _, cs := range rep.Status.Components {
		out[trainyardv1.TrainName(cs.Name, rep.TrainOf(cs.Name))] = cs
	}
	if len(rep.Status.Components) == len(rep.Spec.Components) {
		return out
	}
	for _, c := range rep.Spec.Components {
		key := trainyardv1.TrainName(c.Name, rep.TrainOf(c.Name))
		if _, ok := out[key]; !ok {
			out[key] = trainyardv1.ComponentStatus{Name: c.Name, Installed: c.Version, State: trainyardv1.StateUpToDate}
		}
	}
	return out
}
