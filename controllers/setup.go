// Package controllers holds the reconcilers that turn ComponentReleases and
// ClusterReports into status: the latest release per train, each cluster's
// update state, staleness and fleet adoption.
package controllers

import (
	"context"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Options configure the controllers; the manager's flags fill them in.
type Options struct {
	// DefaultOrdering is the ordering of ReleaseTrains the controller creates.
	DefaultOrdering v1.Ordering
	// StaleThreshold is how long a cluster may go without a check-in before
	// it is Stale.
	StaleThreshold time.Duration
	// Clock is the time source for staleness (a fake one in tests).
	Clock clock.WithDelayedExecution
	// TrainWorkers and ReportWorkers are each controller's concurrent reconciles.
	TrainWorkers, ReportWorkers int
}

// Setup registers the field indexes and every controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.DefaultOrdering == "" {
		o.DefaultOrdering = v1.OrderingSemver
	}
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	recorder := mgr.GetEventRecorder("trainyard-controller")
	if err := (&ReleaseTrainReconciler{
		Client: mgr.GetClient(), Recorder: recorder,
		DefaultOrdering: o.DefaultOrdering, Workers: o.TrainWorkers, Clock: o.Clock,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ClusterReportReconciler{
		Client: mgr.GetClient(), Recorder: recorder, Clock: o.Clock,
		StaleThreshold: o.StaleThreshold, Workers: o.ReportWorkers,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&PromotionReconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: o.Clock}).SetupWithManager(mgr)
}
