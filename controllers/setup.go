// Package controllers holds the reconcilers that turn ComponentReleases and
// ClusterReports into status: the latest release per train, each cluster's
// update state, staleness and fleet adoption.
package controllers

import (
	"flag"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Options configure the controllers; the manager's flags fill them in.
type Options struct {
	// DefaultOrdering is the ordering of ReleaseTrains the controller creates.
	DefaultOrdering trainyardv1.Ordering
	// StaleThreshold is how long a cluster may go without a check-in before
	// it is Stale.
	StaleThreshold time.Duration
	// Clock is the time source for staleness (a fake one in tests).
	Clock clock.WithDelayedExecution
	// TrainWorkers and ReportWorkers are each controller's concurrent reconciles.
	TrainWorkers, ReportWorkers int
}

// BindFlags binds the controllers' flags to o, with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	o.DefaultOrdering = trainyardv1.OrderingSemver
	fs.Var((*orderingFlag)(&o.DefaultOrdering), "default-ordering",
		"Ordering of the ReleaseTrains the controller creates: Semver, or ReleaseTime as the Deis service did.")
	fs.DurationVar(&o.StaleThreshold, "stale-threshold", DefaultStaleThreshold,
		"A cluster that has not checked in for this long is Stale.")
	fs.IntVar(&o.TrainWorkers, "train-workers", 2, "Concurrent ReleaseTrain reconciles.")
	fs.IntVar(&o.ReportWorkers, "report-workers", 16, "Concurrent ClusterReport reconciles "+
		"(each waits on its status write: 4 kept up with one new cluster in two when 16 onboard at once).")
}

// Validate checks flag values that the flag package cannot.
func (o *Options) Validate() error {
	if o.StaleThreshold <= 0 {
		return fmt.Errorf("--stale-threshold must be positive, not %s", o.StaleThreshold)
	}
	if o.TrainWorkers < 1 || o.ReportWorkers < 1 {
		return fmt.Errorf("--train-workers and --report-workers must be at least 1, not %d and %d", o.TrainWorkers, o.ReportWorkers)
	}
	return nil
}

type orderingFlag trainyardv1.Ordering

func (f *orderingFlag) String() string { return string(*f) }

func (f *orderingFlag) Set(s string) error {
	switch o := trainyardv1.Ordering(s); o {
	case trainyardv1.OrderingSemver, trainyardv1.OrderingReleaseTime:
		*f = orderingFlag(o)
		return nil
	}
	return fmt.Errorf("must be Semver or ReleaseTime")
}

// Setup registers every controller with mgr, whose cache must have the
// field indexes (internal/index.Setup).
func Setup(mgr ctrl.Manager, o Options) error {
	if o.DefaultOrdering == "" {
		o.DefaultOrdering = trainyardv1.OrderingSemver
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
	if err := (&PromotionReconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: o.Clock}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&RolloutReconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: o.Clock}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&TrustPolicyReconciler{Client: mgr.GetClient(), Clock: o.Clock}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&AdvisoryReconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: o.Clock}).SetupWithManager(mgr)
}
