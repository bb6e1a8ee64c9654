// Package upgrade computes, for one installed version, the recommended
// upgrade target on its train and the path of hops to it, as OpenShift's
// update graph does for a cluster: releases say which versions may move to
// them directly (upgradeFrom) and which risks they carry (rules over the
// cluster's report). Retracted releases are never hops or targets; a risk
// that cannot be evaluated counts as applying (never fail open). Pure, so
// the graph is tested without a server and the same inputs always give the
// same answer.
package upgrade

import (
	"fmt"
	"slices"

	"github.com/Masterminds/semver/v3"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// MaxConditional is how many conditional targets a component lists, and
// MaxRisks how many risks each names (as the status's schema allows).
const (
	MaxConditional = 8
	MaxRisks       = 16
)

// Release is one release of the train.
type Release struct {
	Version     string
	Retracted   bool
	UpgradeFrom string
	Risks       []trainyardv1.UpgradeRisk
	// Advisories are those that affect this version, on this train, with
	// no risk acceptance in force for this cluster: such a release is
	// never a hop or a target (it is listed as conditional instead).
	Advisories []Advisory
}

// Advisory is what a recommendation says of an advisory that holds a
// release back.
type Advisory struct {
	ID, Summary, URL string
}

// Cluster is what a risk's rule sees of a cluster.
type Cluster struct {
	ID                             string
	Labels, Properties, Components map[string]string
}

// Result is the recommendation for one installed version.
type Result struct {
	// Recommended is the highest version reachable through releases whose
	// risks do not apply ("" when none is higher than the installed one).
	Recommended string
	// Path is the hops from the installed version to Recommended, the last
	// being Recommended: the fewest hops, ties to the highest versions.
	Path []string
	// Conditional are higher versions reachable in one more hop, held back
	// by risks that apply to this cluster (or cannot be evaluated on it).
	Conditional []trainyardv1.ConditionalUpdate
}

type node struct {
	v     *semver.Version
	rel   Release
	from  *semver.Constraints       // nil: any older version
	risks []trainyardv1.AppliedRisk // the risks that hold it back
	bad   bool                      // its upgradeFrom does not parse: no way in
}

// Recommend computes the recommendation. accepted tells whether a risk is
// accepted for this cluster (nil: none is).
func Recommend(installed string, releases []Release, c Cluster, rules *Rules, accepted func(risk string) bool) Result {
	return recommend(installed, releases, c, rules, accepted, false)
}

// RecommendFix computes the recommendation of a cluster whose installed
// version an advisory affects: the nearest version it can reach through
// releases no advisory affects, not the highest, so that the fix is the
// smallest change (a patch release before a new minor). The next
// recommendation, once it runs the fix, is the highest as usual.
func RecommendFix(installed string, releases []Release, c Cluster, rules *Rules, accepted func(risk string) bool) Result {
	return recommend(installed, releases, c, rules, accepted, true)
}

func recommend(installed string, releases []Release, c Cluster, rules *Rules, accepted func(risk string) bool, nearest bool) Result {
	from, err := ordering.Parse(installed)
	if err != nil {
		return Result{}
	}
	nodes := graph(from, releases, c, rules, accepted)
	dist := distances(from, nodes)
	var res Result
	target := -1
	for i := len(nodes) - 1; i >= 0; i-- {
		if dist[i] > 0 {
			target = i
			if !nearest {
				break
			}
		}
	}
	if target >= 0 {
		res.Recommended = nodes[target].rel.Version
		res.Path = pathTo(nodes, dist, target)
	}
	res.Conditional = heldBack(from, nodes, dist, target)
	return res
}

// graph is the releases above from, each once, in ascending order (so
// "highest" is the last and ties are broken the same way every time), with
// the edges they accept (upgradeFrom) and the risks that apply to c.
func graph(from *semver.Version, releases []Release, c Cluster, rules *Rules, accepted func(risk string) bool) []*node {
	var nodes []*node
	seen := map[string]bool{}
	for _, r := range releases {
		v, err := ordering.Parse(r.Version)
		if err != nil || r.Retracted || !v.GreaterThan(from) || seen[v.String()] {
			continue
		}
		seen[v.String()] = true
		n := &node{v: v, rel: r}
		if r.UpgradeFrom != "" {
			if n.from, err = ordering.ParseRange(r.UpgradeFrom); err != nil {
				n.bad = true
			}
		}
		for _, risk := range r.Risks {
			applies, err := rules.Applies(risk.Rule, c)
			switch {
			case err != nil:
				n.risks = append(n.risks, trainyardv1.AppliedRisk{Name: risk.Name, Message: risk.Message, URL: risk.URL,
					Reason: fmt.Sprintf("cannot be evaluated on this cluster: %v", err)})
			case applies && (accepted == nil || !accepted(risk.Name)):
				n.risks = append(n.risks, trainyardv1.AppliedRisk{Name: risk.Name, Message: risk.Message, URL: risk.URL,
					Reason: "applies to this cluster"})
			}
		}
		for i, a := range r.Advisories {
			if len(n.risks) == MaxRisks-1 && i < len(r.Advisories)-1 {
				// The status holds MaxRisks: the last one says what is left out.
				n.risks = append(n.risks, trainyardv1.AppliedRisk{Name: "more-advisories",
					Message: fmt.Sprintf("%d more advisories affect this version", len(r.Advisories)-i),
					Reason:  "advisories affect this version"})
				break
			}
			if len(n.risks) == MaxRisks {
				break
			}
			n.risks = append(n.risks, trainyardv1.AppliedRisk{Name: a.ID, Message: a.Summary, URL: a.URL,
				Reason: "advisory " + a.ID + " affects this version"})
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b *node) int { return a.v.Compare(b.v) })
	return nodes
}

// edge says whether a cluster on u may upgrade to w.
func edge(u *semver.Version, w *node) bool {
	return !w.bad && w.v.GreaterThan(u) && (w.from == nil || w.from.Check(u))
}

// distances searches breadth first over the safe releases: the fewest hops
// from from to each node (-1: unreachable).
func distances(from *semver.Version, nodes []*node) []int {
	dist := make([]int, len(nodes))
	for i := range dist {
		dist[i] = -1
	}
	frontier := []*semver.Version{from}
	for d := 1; len(frontier) > 0; d++ {
		var next []*semver.Version
		for i, n := range nodes {
			if dist[i] >= 0 || len(n.risks) > 0 {
				continue
			}
			if slices.ContainsFunc(frontier, func(u *semver.Version) bool { return edge(u, n) }) {
				dist[i] = d
				next = append(next, n.v)
			}
		}
		frontier = next
	}
	return dist
}

// pathTo walks back from the target: the highest predecessor one hop
// closer, each time.
func pathTo(nodes []*node, dist []int, target int) []string {
	path := []string{nodes[target].rel.Version}
	cur := nodes[target]
	for d := dist[target] - 1; d > 0; d-- {
		for i := len(nodes) - 1; i >= 0; i-- {
			if dist[i] == d && edge(nodes[i].v, cur) {
				cur = nodes[i]
				path = append(path, cur.rel.Version)
				break
			}
		}
	}
	slices.Reverse(path)
	return path
}

// heldBack are the releases with risks higher than the recommendation (the
// target; -1: none), one hop from where the cluster is or can get to.
func heldBack(from *semver.Version, nodes []*node, dist []int, target int) []trainyardv1.ConditionalUpdate {
	reach := []*semver.Version{from}
	for i, n := range nodes {
		if dist[i] > 0 {
			reach = append(reach, n.v)
		}
	}
	var out []trainyardv1.ConditionalUpdate
	for i := len(nodes) - 1; i >= 0 && len(out) < MaxConditional; i-- {
		n := nodes[i]
		if len(n.risks) == 0 || (target >= 0 && !n.v.GreaterThan(nodes[target].v)) {
			continue
		}
		if slices.ContainsFunc(reach, func(u *semver.Version) bool { return edge(u, n) }) {
			out = append(out, trainyardv1.ConditionalUpdate{Version: n.rel.Version, Risks: n.risks})
		}
	}
	return out
}
