package index

import (
	"context"
	"fmt"
	"strings"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Reports reads a namespace's reports by one of their field indexes,
// in place.
//
// A list from controller-runtime's cache copies every matching report into
// the list's items even with UnsafeDisableDeepCopy (each report's struct,
// about 400 bytes, not what it points to): 40 MB per list of the reports on
// one train at 100,000 clusters, and the train controller recounts a train's
// adoption after check-ins (at 50,000 clusters such a copy was the largest
// transient in the manager's heap profile, 19 MB). Reports reads the
// informer's index instead and hands out the cache's own objects.
type Reports struct {
	// Cache is the manager's cache, whose report informer carries the
	// indexes (Setup). Nil, or a cache whose informer is not reachable
	// (one scoped to several namespaces), reads through Reader.
	Cache cache.Informers
	// Reader lists when the informer cannot be reached.
	Reader client.Reader
}

// Each calls fn with every report of namespace ns whose index field has
// value. The report is the cache's own object (or a list's): fn must not
// change it. What fn keeps of it (a label map) stays as it read it: the
// cache replaces an object on a change, it never edits one.
func (r Reports) Each(ctx context.Context, ns, field, value string, fn func(*trainyardv1.ClusterReport)) error {
	idx, err := r.indexer(ctx)
	if err != nil {
		return err
	}
	if idx != nil {
		return eachIndexed(idx, field, namespacedKey(ns, value), fn)
	}
	var list trainyardv1.ClusterReportList
	if err := r.Reader.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{field: value},
		client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		fn(&list.Items[i])
	}
	return nil
}

// EachRunning calls fn with every report of namespace ns that runs
// component, on whichever train, each once. It reads the train index
// (ReportTrain): a train's name is "<component>.<train>", neither holding a
// dot, so a component's reports are those of its trains, and a report runs
// a component once (on one train). An index by component of its own held
// as many keys again as the train index: ten more per report of ten
// components, about 40 MB at 100,000 clusters.
func (r Reports) EachRunning(ctx context.Context, ns, component string, fn func(*trainyardv1.ClusterReport)) error {
	idx, err := r.indexer(ctx)
	if err != nil {
		return err
	}
	if idx != nil {
		if _, ok := idx.GetIndexers()[indexName(ReportTrain)]; !ok {
			// ListIndexFuncValues would find nothing, silently.
			return fmt.Errorf("the report informer has no %s index (index.Setup)", ReportTrain)
		}
		prefix := namespacedKey(ns, component+".")
		for _, key := range idx.ListIndexFuncValues(indexName(ReportTrain)) {
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			if err := eachIndexed(idx, ReportTrain, key, fn); err != nil {
				return err
			}
		}
		return nil
	}
	var list trainyardv1.ClusterReportList
	if err := r.Reader.List(ctx, &list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		for _, c := range list.Items[i].Spec.Components {
			if c.Name == component {
				fn(&list.Items[i])
				break
			}
		}
	}
	return nil
}

// indexer is the report informer's indexer, nil when the cache's informer
// cannot be reached (Reader lists then).
func (r Reports) indexer(ctx context.Context) (toolscache.Indexer, error) {
	if r.Cache == nil {
		return nil, nil
	}
	inf, err := r.Cache.GetInformer(ctx, &trainyardv1.ClusterReport{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, err
	}
	if si, ok := inf.(toolscache.SharedIndexInformer); ok {
		return si.GetIndexer(), nil
	}
	return nil, nil
}

// eachIndexed calls fn with every report under key in a field index.
func eachIndexed(idx toolscache.Indexer, field, key string, fn func(*trainyardv1.ClusterReport)) error {
	objs, err := idx.ByIndex(indexName(field), key)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if rep, ok := o.(*trainyardv1.ClusterReport); ok {
			fn(rep)
		}
	}
	return nil
}
