package bridge

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// predictedLabels are the status labels the report controller will find
// for what a check-in reports (the outdated, retracted and unknown ones:
// advisories and staleness are the controller's alone), from the trains
// and releases in the bridge's cache. A new report is created with them
// and a changed component list is written with them, so that the
// controller, which owns the labels, usually writes none: a new cluster
// costs two writes, not three. A wrong guess (a cache a moment behind)
// costs the controller's label write, no more.
func (s *Server) predictedLabels(ctx context.Context, r *trainyardv1.ClusterReport) map[string]bool {
	var sum trainyardv1.ComponentSummary
	for _, c := range r.Spec.Components {
		sum.Count(s.predictedState(ctx, r.Namespace, c))
	}
	all := trainyardv1.StatusLabelsOf(&sum, false)
	return map[string]bool{
		trainyardv1.LabelOutdated:  all[trainyardv1.LabelOutdated],
		trainyardv1.LabelRetracted: all[trainyardv1.LabelRetracted],
		trainyardv1.LabelUnknown:   all[trainyardv1.LabelUnknown],
	}
}

// predictedState is the state the controller computes for a component
// (trainyardv1.StateOf), read from the cache.
func (s *Server) predictedState(ctx context.Context, ns string, c trainyardv1.ReportedComponent) trainyardv1.ComponentState {
	train := &trainyardv1.ReleaseTrain{}
	// The cache's own objects, read only.
	if err := s.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: trainyardv1.TrainName(c.Name, c.Train)}, train, client.UnsafeDisableDeepCopy); err != nil {
		return trainyardv1.StateUnknown
	}
	latest := ""
	if train.Status.Latest != nil {
		latest = train.Status.Latest.Version
	}
	rel := &trainyardv1.ComponentRelease{}
	known := s.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: trainyardv1.ReleaseName(c.Name, c.Train, c.Version)}, rel, client.UnsafeDisableDeepCopy) == nil &&
		trainyardv1.CanonicalVersion(rel.Spec.Version) == trainyardv1.CanonicalVersion(c.Version)
	return trainyardv1.StateOf(c.Version, latest, known, known && rel.Spec.Retracted != nil)
}
