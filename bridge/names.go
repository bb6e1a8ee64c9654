package bridge

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// reportNames keeps each namespace's ClusterReports by name, from the
// informer's events, and their names in order when asked: a page of the
// fleet is then found by a binary search and read report by report, where
// listing copied 100,000 reports (56 MB) per request and the garbage made the
// GC the page's main cost. The reports are the informer's own objects (read
// only; an update replaces one, never changes it), so that a page needs no
// Get per report: the multi-namespace cache's Get maps the object's kind
// through the RESTMapper each time, which was half of a page's CPU at
// 100,000 clusters, allocations included (issue 32). Bounded by the reports
// in the cache.
type reportNames struct {
	mu   sync.Mutex
	byNS map[string]*namespaceNames
}

type namespaceNames struct {
	reports map[string]*trainyardv1.ClusterReport
	// sorted is the reports' names in order, rebuilt at the first read
	// after a report came or went; a read shares it and never changes it.
	sorted []string
}

// changed records a report as the informer has it now; nil: deleted.
func (n *reportNames) changed(ns, name string, r *trainyardv1.ClusterReport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nn := n.byNS[ns]
	if nn == nil {
		if r == nil {
			return
		}
		nn = &namespaceNames{reports: map[string]*trainyardv1.ClusterReport{}}
		n.byNS[ns] = nn
	}
	_, had := nn.reports[name]
	if r != nil {
		nn.reports[name] = r
	} else {
		delete(nn.reports, name)
	}
	if had != (r != nil) {
		nn.sorted = nil
	}
}

// get is the namespace's report of that name, nil when there is none. The
// caller must not change it.
func (n *reportNames) get(ns, name string) *trainyardv1.ClusterReport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nn := n.byNS[ns]; nn != nil {
		return nn.reports[name]
	}
	return nil
}

// count is how many reports the namespace has.
func (n *reportNames) count(ns string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nn := n.byNS[ns]; nn != nil {
		return len(nn.reports)
	}
	return 0
}

// list is the namespace's report names in order (read only).
func (n *reportNames) list(ns string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	nn := n.byNS[ns]
	if nn == nil {
		return nil
	}
	if nn.sorted == nil {
		nn.sorted = make([]string, 0, len(nn.reports))
		for name := range nn.reports {
			nn.sorted = append(nn.sorted, name)
		}
		slices.Sort(nn.sorted)
	}
	return nn.sorted
}

// reportNamesOf is the namespace's report names in order: from the watched
// names, or (a bridge whose Watch was not called) listed from the cache.
func (s *Server) reportNamesOf(ctx context.Context, ns string) ([]string, error) {
	if s.names != nil {
		return s.names.list(ns), nil
	}
	var list trainyardv1.ClusterReportList
	if err := s.cache.List(ctx, &list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	names := make([]string, len(list.Items))
	for i := range list.Items {
		names[i] = list.Items[i].Name
	}
	slices.SortFunc(names, cmp.Compare[string])
	return names, nil
}
