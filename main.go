/*
Copyright 2026 The trainyard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command trainyard runs the trainyard manager: the controllers that keep
// ReleaseTrain and ClusterReport status current.
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	trainyardv1alpha1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "trainyard:", err)
		os.Exit(1)
	}
}

// options are the manager's command-line flags.
type options struct {
	kubeconfig     string
	metricsAddr    string
	metricsSecure  bool
	probeAddr      string
	leaderElection bool
	leaderElectNS  string
	qps            float64
	burst          int
	controllers    controllers.Options
	ordering       string
}

func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; defaults to $KUBECONFIG, then the in-cluster config.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only clients that RBAC lets get /metrics.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.BoolVar(&o.leaderElection, "leader-elect", false, "Elect a leader so that only one replica runs the controllers.")
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (defaults to the pod's namespace).")
	fs.Float64Var(&o.qps, "kube-api-qps", 50, "Client-side limit of requests per second to the Kubernetes API (-1: none; the API server's priority and fairness still applies).")
	fs.IntVar(&o.burst, "kube-api-burst", 100, "Burst above --kube-api-qps.")
	fs.StringVar(&o.ordering, "default-ordering", string(trainyardv1alpha1.OrderingSemver),
		"Ordering of the ReleaseTrains the controller creates: Semver, or ReleaseTime as the Deis service did.")
	fs.DurationVar(&o.controllers.StaleThreshold, "stale-threshold", controllers.DefaultStaleThreshold,
		"A cluster that has not checked in for this long is Stale.")
	fs.IntVar(&o.controllers.TrainWorkers, "train-workers", 2, "Concurrent ReleaseTrain reconciles.")
	fs.IntVar(&o.controllers.ReportWorkers, "report-workers", 4, "Concurrent ClusterReport reconciles.")
}

// metricsOptions serves metrics like kubebuilder's scaffold: HTTPS with
// authentication and authorization through the API server, unless disabled.
func metricsOptions(o options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(trainyardv1alpha1.AddToScheme(s))
	return s
}

func run(args []string) error {
	fs := flag.NewFlagSet("trainyard", flag.ContinueOnError)
	var o options
	o.bind(fs)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	switch ord := trainyardv1alpha1.Ordering(o.ordering); ord {
	case trainyardv1alpha1.OrderingSemver, trainyardv1alpha1.OrderingReleaseTime:
		o.controllers.DefaultOrdering = ord
	default:
		return fmt.Errorf("--default-ordering must be Semver or ReleaseTime, not %q", o.ordering)
	}
	if o.controllers.StaleThreshold <= 0 {
		return fmt.Errorf("--stale-threshold must be positive, not %s", o.controllers.StaleThreshold)
	}

	if o.kubeconfig != "" {
		// ctrl.GetConfig reads the --kubeconfig of the global flag set, which
		// this command does not use; the variable says the same thing.
		if err := os.Setenv("KUBECONFIG", o.kubeconfig); err != nil {
			return err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  newScheme(),
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElection,
		LeaderElectionID:        "trainyard-manager.trainyard.dev",
		LeaderElectionNamespace: o.leaderElectNS,
		// The controllers stop touching the API before a new leader starts.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, o.controllers); err != nil {
		return fmt.Errorf("setting up controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	log.Info("starting manager")
	return mgr.Start(ctx)
}
