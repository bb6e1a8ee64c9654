package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/trainyard-dev/trainyard/internal/wire"
)

// A Source finds components in the workload cluster: workloads by their
// labels (agent/source/workloads), Helm releases (agent/source/helm), and
// whatever comes next. A source is one package under agent/source with one
// file: the type, its RBAC markers (make manifests turns them into the
// ClusterRole agent-<name>, which the chart binds when the source is on) and
// an init that registers it.
type Source interface {
	// Watch asks k to cache what the source reads (Kube.Cache) and to call
	// changed when what it reports may have changed. The caches run from
	// Kube.Sync on.
	Watch(k *Kube, changed func()) error
	// List reports the components found, and why anything was left out
	// (for the log). It reads the caches, or the API for what is too large
	// to cache.
	List(ctx context.Context) (comps []wire.ComponentVersion, skipped []string, err error)
}

// Config is what a source is built with.
type Config struct {
	Kube *Kube
	// DefaultTrain is the train of what carries no trainyard.dev/train label.
	DefaultTrain string
}

// Registration names a source and builds it.
type Registration struct {
	// Name is the source's name in --sources and in the chart's
	// agent.sources, and the name of its package under agent/source.
	Name string
	// Usage says what it reports and what it needs.
	Usage string
	New   func(Config) (Source, error)
}

var registry = struct {
	sync.Mutex
	m map[string]Registration
}{m: map[string]Registration{}}

// Register makes a source available by name; a source's init calls it.
func Register(r Registration) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[r.Name]; dup || r.Name == "" || r.New == nil {
		panic(fmt.Sprintf("agent: source %q registered twice or incompletely", r.Name))
	}
	registry.m[r.Name] = r
}

// Sources are the registered sources, by name.
func Sources() []Registration {
	registry.Lock()
	defer registry.Unlock()
	out := make([]Registration, 0, len(registry.m))
	for _, r := range registry.m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NewSources builds the named sources, in order.
func NewSources(names []string, c Config) ([]Source, error) {
	var out []Source
	for _, n := range names {
		registry.Lock()
		r, ok := registry.m[n]
		registry.Unlock()
		if !ok {
			var known []string
			for _, r := range Sources() {
				known = append(known, r.Name)
			}
			return nil, fmt.Errorf("no discovery source %q (known: %s)", n, strings.Join(known, ", "))
		}
		s, err := r.New(c)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", n, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// merge joins what the sources found: a component name reported by an
// earlier source wins over a later one (workloads say more than a chart
// name). The result is sorted by component name.
func merge(found [][]wire.ComponentVersion) (comps []wire.ComponentVersion, skipped []string) {
	seen := map[string]bool{}
	comps = []wire.ComponentVersion{}
	for _, list := range found {
		for _, cv := range list {
			name := cv.Component.Name
			if seen[name] {
				skipped = append(skipped, fmt.Sprintf("%s %s %s: component %s is already reported",
					cv.Component.Type, cv.Component.Name, cv.Version.Version, name))
				continue
			}
			seen[name] = true
			comps = append(comps, cv)
		}
	}
	slices.SortStableFunc(comps, func(a, b wire.ComponentVersion) int { return strings.Compare(a.Component.Name, b.Component.Name) })
	return comps, skipped
}
