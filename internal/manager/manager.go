// Package manager is trainyard's process setup: the manager's and `trainyard
// bridge`'s flags, the manager they build, and the Setups that register each
// part (indexes, controllers, notifications, webhooks, bridge, probes) with
// it. It is the one package that imports controllers and webhook; test
// suites use its Setups to run the parts they test.
package manager

import (
	"context"
	"flag"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/logging"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// Scheme is the scheme of trainyard's processes: Kubernetes' built-in kinds
// and trainyard's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(trainyardv1.AddToScheme(s))
	return s
}

// Run is the `trainyard` command: the controllers, the admission webhook
// and, unless --bridge-bind-address=0, the check-in bridge.
func Run(args []string) error {
	fs := flag.NewFlagSet("trainyard", flag.ContinueOnError)
	var o Options
	o.BindFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	logging.Setup(&zapOpts)
	log := ctrl.Log.WithName("setup")
	log.Info("trainyard", "version", version.Get().Version, "commit", version.Get().Commit)
	registerBuildInfo(ctrlmetrics.Registry, version.Get())

	cfg, err := restConfig(o.Process)
	if err != nil {
		return err
	}
	metrics, err := metricsOptions(o.Process)
	if err != nil {
		return err
	}
	cacheOptions, indexes := cacheAndIndexes(o.bridge.Addr != "0")
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  Scheme(),
		Cache:                   cacheOptions,
		Metrics:                 metrics,
		HealthProbeBindAddress:  o.Process.ProbeAddr,
		PprofBindAddress:        o.Process.PprofAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "trainyard-manager.trainyard.dev",
		LeaderElectionNamespace: o.Process.Namespace,
		// The controllers stop touching the API before a new leader starts.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: o.Webhook.Host, Port: o.Webhook.Port, CertDir: o.Webhook.CertDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	setups := []Setup{SetupIndexes(indexes...), SetupControllers(o.Controllers)}
	if o.Notify.Enabled {
		no, _ := o.Notify.Options() // checked by Validate
		setups = append(setups, SetupNotifications(no))
	}
	if o.Webhook.Enabled {
		setups = append(setups, SetupWebhooks, func(ctx context.Context, mgr ctrl.Manager) error {
			return setupWebhookCertificates(ctx, mgr, o.Process.Namespace, o.Webhook)
		})
	}
	if o.bridge.Addr != "0" {
		// The bridge in the manager's process: one binary for a small
		// install (the chart runs it apart, as `trainyard bridge`).
		setups = append(setups, SetupBridge(o.bridge))
	}
	setups = append(setups, SetupProbes(o.Webhook.Enabled))
	if err := run(ctx, mgr, setups...); err != nil {
		return err
	}
	log.Info("starting manager")
	return mgr.Start(ctx)
}

// cacheAndIndexes are the manager's cache options and the indexes it
// registers (nil: all). With the bridge apart (the chart's way), nothing
// here reads what only the bridge reads: a report's identity annotations,
// and the index of its credentials.
func cacheAndIndexes(bridgeInProcess bool) (cache.Options, []string) {
	if bridgeInProcess {
		return CacheOptions(), nil
	}
	return ControllersCacheOptions(), index.AllBut(index.ReportCredential)
}
