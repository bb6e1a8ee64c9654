package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// Field indexes on the manager's cache, registered in one place (here) and
// used by the controllers to map an event to exactly the objects it affects.
const (
	// IndexReleaseTrain maps a ComponentRelease to its train's name.
	IndexReleaseTrain = "trainyard.dev/release-train"
	// IndexReleaseVersion maps a ComponentRelease to VersionKey(train, version).
	IndexReleaseVersion = "trainyard.dev/release-version"
	// IndexReportTrain maps a ClusterReport to the trains of its components.
	IndexReportTrain = "trainyard.dev/report-train"
)

// VersionKey identifies one version of a train. Versions that are the same
// semantic version ("v1.2.0" and "1.2.0") share a key.
func VersionKey(trainName, version string) string {
	return trainName + "/" + ordering.Canonical(version)
}

// SetupIndexes registers every field index the controllers use.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	indexes := []struct {
		obj     client.Object
		field   string
		extract client.IndexerFunc
	}{
		{&v1.ComponentRelease{}, IndexReleaseTrain, func(o client.Object) []string {
			r := o.(*v1.ComponentRelease)
			return []string{v1.TrainName(r.Spec.Component, r.Spec.Train)}
		}},
		{&v1.ComponentRelease{}, IndexReleaseVersion, func(o client.Object) []string {
			r := o.(*v1.ComponentRelease)
			return []string{VersionKey(v1.TrainName(r.Spec.Component, r.Spec.Train), r.Spec.Version)}
		}},
		{&v1.ClusterReport{}, IndexReportTrain, func(o client.Object) []string {
			r := o.(*v1.ClusterReport)
			keys := make([]string, 0, len(r.Spec.Components))
			for _, c := range r.Spec.Components {
				keys = append(keys, v1.TrainName(c.Name, c.Train))
			}
			return keys
		}},
	}
	for _, ix := range indexes {
		if err := indexer.IndexField(ctx, ix.obj, ix.field, ix.extract); err != nil {
			return err
		}
	}
	return nil
}
