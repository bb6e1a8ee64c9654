package bridge

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// reportNames keeps the names of each namespace's ClusterReports, from the
// informer's events, in order when asked: a page of the fleet is then found
// by a binary search and read report by report from the cache, where listing
// copied 100,000 reports (56 MB) per request and the garbage made the GC the
// page's main cost. Bounded by the reports in the cache.
type reportNames struct {
	mu   sync.Mutex
	byNS map[string]*namespaceNames
}

type namespaceNames struct {
	set map[string]struct{}
	// sorted is set's names in order, rebuilt at the first read after a
	// report came or went; a read shares it and never changes it.
	sorted []string
}

func (n *reportNames) changed(ns, name string, present bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nn := n.byNS[ns]
	if nn == nil {
		if !present {
			return
		}
		nn = &namespaceNames{set: map[string]struct{}{}}
		n.byNS[ns] = nn
	}
	if _, had := nn.set[name]; had == present {
		return
	}
	if present {
		nn.set[name] = struct{}{}
	} else {
		delete(nn.set, name)
	}
	nn.sorted = nil
}

// count is how many reports the namespace has.
func (n *reportNames) count(ns string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nn := n.byNS[ns]; nn != nil {
		return len(nn.set)
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
		nn.sorted = make([]string, 0, len(nn.set))
		for name := range nn.set {
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
