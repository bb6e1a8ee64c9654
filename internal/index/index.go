// Package index holds the field indexes of trainyard's objects in the
// manager's cache: their names, how each is computed, and Setup, which
// registers them all. The controllers, the admission webhook and the bridge
// query them; this package imports nothing else of trainyard's but the API
// types, so none of them has to import another for an index name (as Cluster
// API keeps its indexes in util/index).
package index

import (
	"context"
	"fmt"
	"slices"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

const (
	// ReleaseTrain maps a ComponentRelease to its train's name.
	ReleaseTrain = "trainyard.dev/release-train"
	// ReleaseVersion maps a ComponentRelease to VersionKey(train, version).
	ReleaseVersion = "trainyard.dev/release-version"
	// ReportTrain maps a ClusterReport to the trains of its components.
	ReportTrain = "trainyard.dev/report-train"
	// TrainPromotionSource maps a ReleaseTrain with spec.promotion to its
	// source train's name, so a change of the source finds the trains that
	// promote from it.
	TrainPromotionSource = "trainyard.dev/train-promotion-source"
	// ReportCredential maps a ClusterReport to the hashes of the
	// credentials it accepts (the current one, and the previous one while a
	// rotation overlaps), so the bridge finds a credential's cluster.
	ReportCredential = "trainyard.dev/report-credential"
	// AcceptanceComponent maps a RiskAcceptance to its component, or to
	// AnyComponent when it names none, so a report's reconcile reads only
	// the acceptances that can apply to one component.
	AcceptanceComponent = "trainyard.dev/acceptance-component"
	// AdvisoryComponent maps an Advisory to the components it affects, so
	// a report's change finds the advisories it can move.
	AdvisoryComponent = "trainyard.dev/advisory-component"
	// AnyComponent is AcceptanceComponent's key for acceptances of every
	// component (no component name can hold "*").
	AnyComponent = "*"
)

// Bridge are the indexes the bridge queries.
var Bridge = []string{ReleaseTrain, ReleaseVersion, ReportCredential}

// VersionKey identifies one version of a train. Versions that are the same
// semantic version ("v1.2.0" and "1.2.0") share a key.
func VersionKey(trainName, version string) string {
	return trainName + "/" + trainyardv1.CanonicalVersion(version)
}

// Setup registers the field indexes on the manager's cache: every one, or
// only those named (a process that runs only the bridge needs three, and
// each index starts an informer that its RBAC must allow). A cache handed
// to the controllers, the webhook or the bridge must have been set up.
func Setup(ctx context.Context, indexer client.FieldIndexer, only ...string) error {
	for _, ix := range indexes {
		if len(only) > 0 && !slices.Contains(only, ix.field) {
			continue
		}
		if _, report := ix.obj.(*trainyardv1.ClusterReport); report {
			if informers, ok := indexer.(cache.Informers); ok {
				if err := indexInNamespaces(ctx, informers, ix.obj, ix.field, ix.extract); err != nil {
					return err
				}
				continue
			}
		}
		if err := indexer.IndexField(ctx, ix.obj, ix.field, ix.extract); err != nil {
			return err
		}
	}
	return nil
}

// AllBut are the names of every index but those given, for Setup.
func AllBut(except ...string) []string {
	var names []string
	for _, ix := range indexes {
		if !slices.Contains(except, ix.field) {
			names = append(names, ix.field)
		}
	}
	return names
}

// indexes are every field index: the object, the field's name, its keys.
var indexes = []struct {
	obj     client.Object
	field   string
	extract client.IndexerFunc
}{
	{&trainyardv1.ComponentRelease{}, ReleaseTrain, func(o client.Object) []string {
		r := o.(*trainyardv1.ComponentRelease)
		return []string{trainyardv1.TrainName(r.Spec.Component, r.Spec.Train)}
	}},
	{&trainyardv1.ComponentRelease{}, ReleaseVersion, func(o client.Object) []string {
		r := o.(*trainyardv1.ComponentRelease)
		return []string{VersionKey(trainyardv1.TrainName(r.Spec.Component, r.Spec.Train), r.Spec.Version)}
	}},
	{&trainyardv1.ClusterReport{}, ReportTrain, func(o client.Object) []string {
		r := o.(*trainyardv1.ClusterReport)
		keys := make([]string, 0, len(r.Spec.Components))
		for _, c := range r.Spec.Components {
			keys = append(keys, trainyardv1.TrainName(c.Name, c.Train))
		}
		return keys
	}},
	{&trainyardv1.Advisory{}, AdvisoryComponent, func(o client.Object) []string {
		a := o.(*trainyardv1.Advisory)
		keys := make([]string, 0, len(a.Spec.Affected))
		for _, c := range a.Spec.Affected {
			keys = append(keys, c.Component)
		}
		return keys
	}},
	{&trainyardv1.ReleaseTrain{}, TrainPromotionSource, func(o client.Object) []string {
		t := o.(*trainyardv1.ReleaseTrain)
		if t.Spec.Promotion == nil {
			return nil
		}
		return []string{trainyardv1.TrainName(t.Spec.Component, t.Spec.Promotion.From)}
	}},
	{&trainyardv1.RiskAcceptance{}, AcceptanceComponent, func(o client.Object) []string {
		if c := o.(*trainyardv1.RiskAcceptance).Spec.Component; c != "" {
			return []string{c}
		}
		return []string{AnyComponent}
	}},
	{&trainyardv1.ClusterReport{}, ReportCredential, func(o client.Object) []string {
		a := o.GetAnnotations()
		var keys []string
		for _, k := range []string{trainyardv1.AnnotationCredentialHash, trainyardv1.AnnotationPreviousCredentialHash} {
			if h := a[k]; h != "" {
				keys = append(keys, h)
			}
		}
		return keys
	}},
}

// indexInNamespaces registers a field index on the informer that keeps each
// value once, under the object's namespace: controller-runtime's
// IndexField keeps it twice (also under "all namespaces"), which at 100,000
// reports was 110 MB of the manager's heap for queries it never asks. The
// keys are the ones its cache reader looks up for a list in one namespace
// (client.InNamespace with client.MatchingFields); a list across every
// namespace by one of these indexes would find nothing, so none is made
// (TestReportIndexesAreAskedInANamespace).
func indexInNamespaces(ctx context.Context, informers cache.Informers, obj client.Object, field string, extract client.IndexerFunc) error {
	inf, err := informers.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	return inf.AddIndexers(toolscache.Indexers{indexName(field): func(o any) ([]string, error) {
		co, ok := o.(client.Object)
		if !ok {
			return nil, fmt.Errorf("object of type %T is not an Object", o)
		}
		vals := extract(co)
		keys := make([]string, len(vals))
		for i, v := range vals {
			keys[i] = namespacedKey(co.GetNamespace(), v)
		}
		return keys, nil
	}})
}

// indexName is the informer's name of a field index, as controller-runtime
// names it (its cache reader looks it up by that name).
func indexName(field string) string { return "field:" + field }

// namespacedKey is a field index's key for a value in a namespace, as
// controller-runtime's cache reader asks for it.
func namespacedKey(ns, value string) string { return ns + "/" + value }
